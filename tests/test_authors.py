"""The authors' files: never committed, found beside the project, or downloaded and checked, or
reported missing while the chapter still runs."""
import hashlib
import pickle
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from repro import authors, plots, report
from repro.config import PROJECT_ROOT

SHARED = PROJECT_ROOT.parent / "shared"


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No offline copy, an empty cache, downloads served from a local folder (a fake GitHub)."""
    monkeypatch.setattr(authors, "search_dirs", lambda chapter: [tmp_path / "none" / chapter])
    monkeypatch.setenv("REPRO_AUTHORS_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("REPRO_AUTHORS_URL", (tmp_path / "github").as_uri() + "/{repo}/{commit}/{path}")
    monkeypatch.delenv("REPRO_OFFLINE", raising=False)
    monkeypatch.setattr(authors, "_FAILURES", {})
    return tmp_path


def publish(root: Path, blob: authors.Blob, data: bytes):
    target = root / "github" / blob.repo / blob.commit / blob.path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)


def npy_bytes(obj) -> bytes:
    import io
    buf = io.BytesIO()
    np.save(buf, np.array(obj, dtype=object) if not isinstance(obj, dict) else np.array(obj), allow_pickle=True)
    return buf.getvalue()


def with_blob(monkeypatch, chapter, name, data: bytes, decode=None, path="x/y z.bin"):
    """Replace one manifest entry by a blob with these bytes and their true SHA-256."""
    blob = authors.Blob("someone/repo", "0" * 40, path, hashlib.sha256(data).hexdigest())
    entry = authors.AuthorsFile((blob,), decode, authors.FILES[chapter][name].columns)
    monkeypatch.setitem(authors.FILES[chapter], name, entry)
    return blob


def test_verbatim_download_is_checked_and_cached(isolated, monkeypatch):
    data = b"1,0.5\r\n5,0.25\r\n"
    blob = with_blob(monkeypatch, "ift6135-2020", "finite_gradient.csv", data)
    publish(isolated, blob, data)
    path = authors.locate("ift6135-2020", "finite_gradient.csv")
    assert path == isolated / "cache" / "ift6135-2020" / "finite_gradient.csv" and path.read_bytes() == data
    (isolated / "github").rename(isolated / "gone")  # a second call reads the cache, no download
    assert authors.locate("ift6135-2020", "finite_gradient.csv") == path


def test_a_changed_blob_is_refused_and_not_cached(isolated, monkeypatch, capsys):
    blob = with_blob(monkeypatch, "ift6135-2020", "finite_gradient.csv", b"1,0.5\r\n")
    publish(isolated, blob, b"1,0.6\r\n")
    frame = report.load_reference_csv("ift6135-2020", "finite_gradient.csv", header=None, names=["N", "max_difference"])
    assert frame.empty and list(frame.columns) == ["N", "max_difference"]
    out = capsys.readouterr().out
    assert "is not available" in out and "SHA-256" in out and "chapter's own results" in out
    assert not (isolated / "cache" / "ift6135-2020" / "finite_gradient.csv").exists()


def test_npy_pickles_are_decoded_by_our_reader(isolated, monkeypatch):
    runs = {init: {"train_accuracy": [np.float64(0.5), np.float64(0.75)], "validation_accuracy": [0.25, 0.5],
                   "train_loss": [np.float64(2.0), np.float64(1.5)], "validation_loss": [2.5, 1.25]}
            for init in ("glorot", "zero")}
    data = npy_bytes([runs])
    blob = with_blob(monkeypatch, "ift6135-2020", "init_study_per_epoch.csv", data, "decode_init_study")
    publish(isolated, blob, data)
    frame = report.load_reference_csv("ift6135-2020", "init_study_per_epoch.csv")
    assert list(frame["init"]) == ["glorot", "glorot", "zero", "zero"] and list(frame["epoch"]) == [1, 2, 1, 2]
    assert frame["train_loss"].tolist() == [2.0, 1.5, 2.0, 1.5] and frame["validation_accuracy"].tolist()[-1] == 0.5


def test_the_npy_reader_refuses_pickled_code():
    class Evil:
        def __reduce__(self):
            return (subprocess.call, (["true"],))
    body = pickle.dumps(Evil(), protocol=2)
    header = b"{'descr': '|O', 'fortran_order': False, 'shape': (), }".ljust(118) + b"\n"
    blob = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + body
    with pytest.raises(authors.AuthorsFileError, match="refusing to unpickle"):
        authors.read_npy_object(blob)
    with pytest.raises(authors.AuthorsFileError, match="not an .npy"):
        authors.read_npy_object(b"PK\x03\x04")


def test_text_sources_are_parsed_as_printed():
    log = (b"==== Initialized logger ====\nEpoch 0 with loss: 0.300311 in 3.895990\nPerformance:{'acc': tensor(0.9576)}\n"
           b"==== Initialized logger ====\nEpoch 0 with loss: 0.073733 in 3.755416\nTest performance:{'acc': tensor(0.9764)}\n")
    assert authors.decode_small_cnn_log([log]) == (b"run,epoch,last_batch_loss,epoch_seconds,val_acc,test_acc\r\n"
                                                   b"1,0,0.300311,3.895990,0.9576,\r\n2,0,0.073733,3.755416,,0.9764\r\n")
    assert authors.decode_grad_diff_labelled([b"1e-2," + b"0.5," * 10 + b"-3\n"]).splitlines()[1] == \
        b"1,0.01," + b"0.5," * 10 + b"-3.0"


def test_offline_and_missing_gives_a_message_and_the_page_still_draws(isolated, monkeypatch, capsys):
    monkeypatch.setenv("REPRO_OFFLINE", "1")
    fig, ours = plots.beside_reference_images("dd2424-a3", ["figures/overfit_cost.png"])
    assert len(ours) == 1 and "not available here" in fig.axes[0].texts[0].get_text()
    plots.plt.close(fig)
    assert "REPRO_OFFLINE is set" in capsys.readouterr().out


def test_reference_dir_variable_wins(tmp_path, monkeypatch):
    (tmp_path / "ift6135-2020").mkdir()
    (tmp_path / "ift6135-2020" / "finite_gradient.csv").write_text("1,0.5\n")
    monkeypatch.setenv("REPRO_REFERENCE_DIR", str(tmp_path))
    assert authors.locate("ift6135-2020", "finite_gradient.csv") == tmp_path / "ift6135-2020" / "finite_gradient.csv"
    with pytest.raises(KeyError, match="no authors' file 'nope.csv'"):
        authors.locate("ift6135-2020", "nope.csv")


@pytest.mark.skipif(not (SHARED / "reference").is_dir(), reason=f"no offline copy at {SHARED / 'reference'}")
def test_pinned_checksums_of_verbatim_files_equal_the_offline_copies():
    checked = 0
    for chapter, files in authors.FILES.items():
        for name, entry in files.items():
            copy = SHARED / "reference" / chapter / name
            if entry.decode is None and copy.is_file():
                assert hashlib.sha256(copy.read_bytes()).hexdigest() == entry.blobs[0].sha256, f"{chapter}/{name}"
                checked += 1
    assert checked >= 27  # 23 figures, 4 CSVs of ift6135-2020, the small-CNN log


@pytest.mark.skipif(not SHARED.is_dir(), reason=f"no {SHARED} beside the checkout, nothing to compare with")
def test_no_tracked_file_is_a_copy_of_a_file_under_shared():
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=PROJECT_ROOT, capture_output=True, check=True).stdout
    ours = {}
    for name in filter(None, tracked.decode().split("\0")):
        path = PROJECT_ROOT / name
        if path.is_file() and path.stat().st_size > 64:  # tiny files (an empty __init__) may coincide
            ours.setdefault(hashlib.sha256(path.read_bytes()).hexdigest(), []).append(name)
    copies = [f"{ours[h]} = {p}" for p in SHARED.rglob("*") if p.is_file() and p.stat().st_size > 64
              and (h := hashlib.sha256(p.read_bytes()).hexdigest()) in ours]
    assert not copies, "files copied from ../shared are tracked: " + "; ".join(copies)


def test_every_manifest_entry_names_a_full_commit_and_sha256():
    for files in authors.FILES.values():
        for entry in files.values():
            for blob in entry.blobs:
                assert len(blob.commit) == 40 and len(blob.sha256) == 64 and int(blob.sha256, 16) >= 0
