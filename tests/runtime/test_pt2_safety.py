"""A crafted model.pt2 must not run code when loaded (issue 20, item 1): every pickled payload is
checked with torch's restricted unpickler before torch.export.load sees the archive."""

from __future__ import annotations

import json
import pickle
import shutil
import zipfile

import pytest

from llm4seg.errors import ConfigError
from llm4seg.runtime.core.backends.pt2_safety import check_pt2_archive
from tests.conftest import write_sealed


class RunsCode:
    """Unpickling this calls os.system: what a crafted archive would do."""

    def __init__(self, marker) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def rewritten(src, dst, change):
    """A copy of the zip archive `src` with member contents replaced by change(name, data)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = change(info.filename, zin.read(info.filename))
            if data is not None:
                zout.writestr(info, data)
    return dst


def test_the_exported_program_passes_and_loads(exported):
    check_pt2_archive(exported[0] / "model.pt2")


@pytest.mark.parametrize("attack", ["sample inputs", "use_pickle weight", "custom object", "foreign member"])
def test_crafted_archives_are_refused_and_run_nothing(exported, tmp_path, attack):
    from llm4seg.runtime.core.backends.torch_backend import TorchBackend
    from llm4seg.runtime.core.manifest import artifact_sha256, load_manifest

    marker = tmp_path / "code-ran"
    payload = pickle.dumps(RunsCode(marker))

    def change(name, data):
        if attack == "sample inputs" and "/data/sample_inputs/" in name:
            return payload
        if attack in ("use_pickle weight", "custom object") and name.endswith("data/weights/model_weights_config.json"):
            config = json.loads(data)
            first = next(iter(config["config"].values()))
            first["use_pickle"] = True
            if attack == "custom object":
                first["path_name"] = "custom_obj_0"
            return json.dumps(config).encode()
        if attack == "use_pickle weight" and name.endswith("data/weights/weight_0"):
            return payload
        return data

    art = tmp_path / "art"
    shutil.copytree(exported[0], art)
    rewritten(exported[0] / "model.pt2", art / "model.pt2", change)
    if attack == "foreign member":
        with zipfile.ZipFile(art / "model.pt2", "a") as z:
            z.writestr(z.namelist()[0].split("/")[0] + "/extra/payload.pkl", payload)
    manifest = json.loads((art / "manifest.json").read_text())  # the attacker rewrites the digest too
    manifest["artifacts"]["model.pt2"]["sha256"] = artifact_sha256(art / "model.pt2")
    write_sealed(art, manifest)  # and the entry digest: it is a seal against edits, not a signature
    with pytest.raises(ConfigError, match="refused before loading"):
        with TorchBackend(art / "model.pt2", manifest=load_manifest(art / "model.pt2"), device="cpu") as backend:
            backend.infer(__import__("numpy").zeros((1, 3, 64, 64), "float32"))
    assert not marker.exists()


@pytest.mark.parametrize("variant", ["payload first, harmless copy last", "harmless first, payload last",
                                     "a second top folder", "a name that normalises alike", "case twin"])
def test_archives_whose_two_readers_could_disagree_are_refused(exported, tmp_path, variant):
    """Issue 33, item 1: a zip may hold one member name twice; Python's zipfile returns the last copy,
    torch's reader the first, so a payload first and a harmless copy last passed the check and ran.
    Any repeated name (also after normalising), or a second top folder, is refused."""
    import warnings

    marker = tmp_path / "code-ran"
    payload = pickle.dumps(RunsCode(marker))
    src = exported[0] / "model.pt2"
    with zipfile.ZipFile(src) as z:
        names = z.namelist()
        target = next(n for n in names if "/data/sample_inputs/" in n)
        top = names[0].split("/")[0]
        original = z.read(target)
    dst = tmp_path / "model.pt2"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate name it is asked to write
        for info in zin.infolist():
            data = zin.read(info.filename)  # before writestr: it rewrites the offsets of the info it is given
            if info.filename == target and variant == "payload first, harmless copy last":
                zout.writestr(info.filename, payload)
            zout.writestr(info.filename, data)
            if info.filename == target and variant == "harmless first, payload last":
                zout.writestr(info.filename, payload)
        if variant == "a second top folder":
            zout.writestr(target.replace(top, top + "_2", 1), payload)
        if variant == "a name that normalises alike":
            zout.writestr(target.replace("/data/", "/data/../data/", 1), payload)
        if variant == "case twin":
            zout.writestr(target.upper(), payload)
    assert original  # the harmless copy is the exporter's own
    with pytest.raises(ConfigError, match="refused before loading"):
        check_pt2_archive(dst)
    assert not marker.exists()
