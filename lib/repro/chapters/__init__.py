"""Code that only one report needs: one module per chapter (notebooks/<chapter>.ipynb)."""
