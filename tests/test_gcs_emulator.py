"""The GCS clients the framework uses, against a local fake-gcs-server (tests/gcs_emulator.py)."""

import os

import numpy as np
import pytest

from tests import gcs_emulator

# the fixtures: a session-scoped fake-gcs-server and a fresh bucket per test
gcs_server = gcs_emulator.gcs_server
gcs_bucket = gcs_emulator.gcs_bucket

pytest.importorskip("gcsfs")


def test_settings_are_active_only_inside_the_fixture(gcs_bucket, gcs_server):
    assert gcs_bucket.startswith("gs://deepdive-test-")
    assert os.environ["STORAGE_EMULATOR_HOST"] == gcs_server.url
    assert os.environ["TENSORSTORE_GCS_HTTP_URL"] == gcs_server.url
    import fsspec
    import gcsfs.core

    fs = fsspec.filesystem("gs")
    assert type(fs) is gcsfs.core.GCSFileSystem  # not the gRPC-probing ExtendedGcsFileSystem
    assert fs.credentials.token == "anon"


def test_epath_write_read_glob_rename_rmtree(gcs_bucket):
    from etils import epath

    root = epath.Path(gcs_bucket) / "data"
    (root / "a.txt").write_text("hello")
    (root / "sub" / "b.bin").write_bytes(b"\x00\x01" * 1000)
    assert (root / "a.txt").read_text() == "hello"
    assert (root / "a.txt").exists() and root.is_dir() and (root / "sub").is_dir()
    assert sorted(p.name for p in root.iterdir()) == ["a.txt", "sub"]
    assert [p.name for p in root.glob("*.txt")] == ["a.txt"]
    assert [str(p) for p in root.glob("sub/*")] == [f"{gcs_bucket}/data/sub/b.bin"]

    (root / "a.txt").rename(root / "c.txt")  # gcsfs: moveTo (400 here) -> copy + delete
    assert not (root / "a.txt").exists()
    assert (root / "c.txt").read_text() == "hello"

    root.rmtree()
    assert not root.exists()
    assert list(epath.Path(gcs_bucket).iterdir()) == []


def test_orbax_checkpoint_manager_on_gcs(gcs_bucket):
    jax = pytest.importorskip("jax")
    ocp = pytest.importorskip("orbax.checkpoint")
    from etils import epath

    directory = epath.Path(gcs_bucket) / "run" / "checkpoints"
    tree = {"w": jax.numpy.arange(12.0).reshape(3, 4), "b": jax.numpy.ones(5, jax.numpy.int32)}
    options = ocp.CheckpointManagerOptions(max_to_keep=2)
    with ocp.CheckpointManager(directory, options=options) as mgr:
        for step in range(3):
            mgr.save(step, args=ocp.args.StandardSave(jax.tree.map(lambda x, s=step: x + s, tree)))
        mgr.wait_until_finished()
        assert mgr.all_steps() == [1, 2]  # step 0 removed by max_to_keep
        assert mgr.latest_step() == 2

    # a new manager sees the same steps; the arrays come back through tensorstore's gcs driver
    with ocp.CheckpointManager(directory) as mgr:
        assert mgr.all_steps() == [1, 2] and mgr.latest_step() == 2
        restored = mgr.restore(2, args=ocp.args.StandardRestore(tree))
    np.testing.assert_array_equal(restored["w"], np.arange(12.0).reshape(3, 4) + 2)
    np.testing.assert_array_equal(restored["b"], np.full(5, 3, np.int32))
    assert isinstance(restored["w"], jax.Array)
    # on gs:// orbax commits by writing commit_success.txt, not by renaming a tmp dir
    assert (directory / "2" / "commit_success.txt").exists()
    assert not (directory / "0").exists()


def test_beam_filesystems_on_gcs(gcs_bucket):
    pytest.importorskip("google.cloud.storage")
    FileSystems = pytest.importorskip("apache_beam.io.filesystems").FileSystems

    path = f"{gcs_bucket}/beam/part-0.txt"
    with FileSystems.create(path) as f:
        f.write(b"line\n" * 100)
    with FileSystems.open(path) as f:
        assert f.read() == b"line\n" * 100
    [result] = FileSystems.match([f"{gcs_bucket}/beam/*.txt"])
    assert [(m.path, m.size_in_bytes) for m in result.metadata_list] == [(path, 500)]

    # rename and delete go through JSON batch requests (see the Content-ID patch)
    FileSystems.rename([path], [f"{gcs_bucket}/beam/final.txt"])
    assert not FileSystems.exists(path) and FileSystems.exists(f"{gcs_bucket}/beam/final.txt")
    FileSystems.delete([f"{gcs_bucket}/beam/final.txt"])
    assert FileSystems.match([f"{gcs_bucket}/beam/*"])[0].metadata_list == []


def test_array_record_reads_gcs_but_cannot_write(gcs_bucket, tmp_path):
    ar = pytest.importorskip("array_record.python.array_record_module")
    from etils import epath

    local = tmp_path / "x.array_record"
    writer = ar.ArrayRecordWriter(str(local), "group_size:1")
    for record in (b"r0", b"r1", b"r2"):
        writer.write(record)
    writer.close()
    remote = f"{gcs_bucket}/records/x.array_record"
    epath.Path(remote).write_bytes(local.read_bytes())

    # array_record's reader has a native gs:// reader (google-cloud-cpp, which follows
    # CLOUD_STORAGE_EMULATOR_ENDPOINT); the writer only writes local files
    reader = ar.ArrayRecordReader(remote)
    assert reader.num_records() == 3 and reader.read_all() == [b"r0", b"r1", b"r2"]
    reader.close()
    writer = ar.ArrayRecordWriter(f"{gcs_bucket}/records/y.array_record", "group_size:1")
    assert not writer.ok()  # it tried to open a local file named "gs://..."
    with pytest.raises(RuntimeError, match="No such file or directory"):
        writer.write(b"r0")
