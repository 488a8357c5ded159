"""Packages: build, verify, export to a job folder and back, run in the simulator, submit to a real federation;
tampered packages and build mistakes refused with one line."""

from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile
from pathlib import Path

import pytest

from flruntime import __version__
from flruntime.cli.main import main
from flruntime.errors import UsageError
from flruntime.packages import PackageError, build_package, package_to_job, verify_package
from flruntime.runtime.simulator import simulate
from flruntime.validation import validate_job
from tests.fedkit import Federation
from tests.simkit import sim_job


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str], list[str]]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out.splitlines(), err.splitlines()


def sources(root: Path, rounds: int = 2) -> tuple[Path, Path]:
    """Training code and configuration as a developer keeps them: code/ and config/ (with meta.json)."""
    job = sim_job(root / "job", num_rounds=rounds)
    (job / "app" / "config" / "meta.json").write_text((job / "meta.json").read_text())
    (job / "app" / "custom" / "__pycache__").mkdir()
    (job / "app" / "custom" / "__pycache__" / "sim_parts.cpython-311.pyc").write_bytes(b"cache")
    return job / "app" / "custom", job / "app" / "config"


def build(root: Path, type: str = "server", **kw) -> Path:
    code, config = sources(root)
    return build_package(type, code, "sim_parts.py", config, root / "dist", **kw)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_build_writes_a_zip_with_a_manifest_and_a_detached_checksum(tmp_path: Path, capsys):
    code, config = sources(tmp_path)
    dist = tmp_path / "dist"
    rc, out, err = run(
        ["build", "-t", "client", "-sf", str(code), "-ep", "sim_parts.py", "-cf", str(config), "-df", str(dist)]
        + ["-v", "2.1.0", "-n", "adder"],
        capsys,
    )
    pkg = dist / "adder-client-2.1.0.zip"
    assert (rc, err) == (0, [])
    assert out == [f"built {pkg} (4 files, entry sim_parts.py); checksum in adder-client-2.1.0.zip.sha256"]
    assert (dist / "adder-client-2.1.0.zip.sha256").read_text() == f"{sha(pkg.read_bytes())}  {pkg.name}\n"
    with zipfile.ZipFile(pkg) as zf:
        names = zf.namelist()
        manifest = json.loads(zf.read("MANIFEST.json"))
        contents = {n: zf.read(n) for n in names}
    assert names[0] == "MANIFEST.json"
    files = {
        "code/sim_parts.py": code / "sim_parts.py",
        "config/config_fed_client.json": config / "config_fed_client.json",
        "config/config_fed_server.json": config / "config_fed_server.json",
        "config/meta.json": config / "meta.json",
    }
    assert sorted(names[1:]) == sorted(files)  # no __pycache__
    assert manifest.pop("created").endswith("Z")
    assert manifest == {
        "format": "flruntime-package",
        "format_version": 1,
        "name": "adder",
        "type": "client",
        "version": "2.1.0",
        "entry": "sim_parts.py",
        "flruntime_version": __version__,
        "files": {arc: sha(path.read_bytes()) for arc, path in sorted(files.items())},
    }
    assert all(contents[arc] == path.read_bytes() for arc, path in files.items())
    assert verify_package(pkg).name == "adder"

    # the default name is the meta.json name; the default version 1.0.0
    assert build_package("server", code, "sim_parts.py", config, dist).name == "job-server-1.0.0.zip"


def test_build_export_validate_and_run_in_the_simulator(tmp_path: Path, capsys):
    pkg = build(tmp_path, version="0.3.0")
    rc, out, err = run(["job", "export", str(pkg), "-o", str(tmp_path / "exported")], capsys)
    assert (rc, err) == (0, [])
    assert out == [f"exported {pkg} to job folder {tmp_path / 'exported'}"]
    exported = tmp_path / "exported"
    assert sorted(p.relative_to(exported).as_posix() for p in exported.rglob("*") if p.is_file()) == [
        "app/config/config_fed_client.json",
        "app/config/config_fed_server.json",
        "app/custom/sim_parts.py",
        "meta.json",
    ]
    assert validate_job(exported).valid
    result = simulate(exported, n_clients=2, workspace=tmp_path / "ws", progress=None)
    assert result.ok and result.rounds_completed == 2, result.error

    # and back: the job folder as a package holds the same files, the entry guessed from the client config
    rc, out, err = run(["job", "export", str(exported), "-o", str(tmp_path / "again"), "-v", "0.3.1"], capsys)
    again = tmp_path / "again" / "job-server-0.3.1.zip"
    assert (rc, err, out) == (0, [], [f"exported {exported} to {again} (4 files, entry sim_parts.py)"])
    assert verify_package(again).files == verify_package(pkg).files

    rc, out, err = run(["job", "export", str(pkg), "-o", str(tmp_path / "exported")], capsys)
    assert (rc, err) == (2, [f"flruntime: error: {exported}: exists and is not empty (pass --force to replace it)"])


def test_a_server_and_a_client_package_export_into_one_app(tmp_path: Path, capsys):
    job = sim_job(tmp_path / "job")
    (tmp_path / "server_cfg").mkdir()
    (tmp_path / "client_cfg").mkdir()
    (tmp_path / "server_cfg" / "meta.json").write_text((job / "meta.json").read_text())
    for side, folder in (("server", "server_cfg"), ("client", "client_cfg")):
        name = f"config_fed_{side}.json"
        (tmp_path / folder / name).write_text((job / "app" / "config" / name).read_text())
    code = job / "app" / "custom"
    dist = tmp_path / "dist"
    server = build_package("server", code, "sim_parts.py", tmp_path / "server_cfg", dist, name="adder")
    client = build_package("client", code, "sim_parts.py", tmp_path / "client_cfg", dist, name="adder")
    rc, out, err = run(["job", "export", str(client), str(server), "-o", str(tmp_path / "pair")], capsys)
    assert (rc, err) == (0, [])
    pair = tmp_path / "pair"
    assert json.loads((pair / "meta.json").read_text())["deploy_map"] == {"app": ["@ALL"]}
    assert sorted(p.name for p in (pair / "app" / "config").iterdir()) == [
        "config_fed_client.json",
        "config_fed_server.json",
    ]
    assert simulate(pair, n_clients=2, workspace=tmp_path / "ws", progress=None).ok

    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "sim_parts.py").write_text("# another file of the same name\n")
    other = build_package("client", tmp_path / "other", "sim_parts.py", tmp_path / "client_cfg", tmp_path / "d2")
    with pytest.raises(UsageError) as exc:
        package_to_job([server, other], tmp_path / "clash")
    assert (
        str(exc.value)
        == f"app/custom/sim_parts.py: {server.name} and {other.name} both hold it, with different content"
    )
    with pytest.raises(UsageError, match="only as a server package and a client package"):
        package_to_job([server, server], tmp_path / "twice")


def rezip(pkg: Path, change) -> None:
    """Rewrite the package's zip with ``change(dict of name -> bytes)`` applied (the .sha256 is left as it was)."""
    with zipfile.ZipFile(pkg) as zf:
        files = {n: zf.read(n) for n in zf.namelist()}
    change(files)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    pkg.write_bytes(buf.getvalue())


def _changed(files: dict[str, bytes]) -> None:
    files["code/sim_parts.py"] = files["code/sim_parts.py"].replace(b"float(k)", b"float(9)")


TAMPERED = {
    "changed byte": (
        _changed,
        "{pkg}: code/sim_parts.py: SHA-256 differs from MANIFEST.json; the file was changed after the build",
    ),
    "added file": (
        lambda f: f.update({"code/evil.py": b"import os\n"}),
        "{pkg}: code/evil.py: not listed in MANIFEST.json (added after the build); refused",
    ),
    "removed file": (
        lambda f: f.pop("config/config_fed_client.json"),
        "{pkg}: config/config_fed_client.json: listed in MANIFEST.json but missing from the package; refused",
    ),
    "missing manifest": (
        lambda f: f.pop("MANIFEST.json"),
        "{pkg}: no MANIFEST.json at its root; not a flruntime package (see `flruntime build`)",
    ),
    "zip slip": (
        lambda f: f.update({"../../evil.py": b"import os\n"}),
        "{pkg}: ../../evil.py: points outside the package folder; refused",
    ),
}


@pytest.mark.parametrize("case", list(TAMPERED))
def test_a_tampered_package_is_refused_naming_the_file(tmp_path: Path, capsys, case: str):
    pkg = build(tmp_path)
    change, message = TAMPERED[case]
    rezip(pkg, change)
    (pkg.parent / f"{pkg.name}.sha256").unlink()  # so the manifest check itself is what refuses it
    with pytest.raises(PackageError) as exc:
        verify_package(pkg)
    assert str(exc.value) == message.format(pkg=pkg)
    rc, out, err = run(["job", "export", str(pkg), "-o", str(tmp_path / "job_out")], capsys)
    assert (rc, out, err) == (1, [], [f"flruntime: error: {message.format(pkg=pkg)}"])
    assert not (tmp_path / "job_out").exists()


def test_a_package_that_differs_from_its_checksum_file_is_refused(tmp_path: Path, capsys):
    pkg = build(tmp_path)
    data = bytearray(pkg.read_bytes())
    data[-30] ^= 0xFF  # one byte of the zip's central directory
    pkg.write_bytes(bytes(data))
    message = f"{pkg}: its SHA-256 does not match {pkg.name}.sha256; the package was changed after it was built"
    rc, out, err = run(["job", "export", str(pkg), "-o", str(tmp_path / "job_out")], capsys)
    assert (rc, out, err) == (1, [], [f"flruntime: error: {message}"])

    # without the .sha256 file: a byte flipped inside a compressed file is caught by unzipping it
    (pkg.parent / f"{pkg.name}.sha256").unlink()
    pkg = build(tmp_path / "again")
    (pkg.parent / f"{pkg.name}.sha256").unlink()
    data = bytearray(pkg.read_bytes())
    with zipfile.ZipFile(pkg) as zf:
        info = zf.getinfo("code/sim_parts.py")
    data[info.header_offset + 30 + len(info.filename) + len(info.extra) + 20] ^= 0x01
    pkg.write_bytes(bytes(data))
    with pytest.raises(PackageError, match=rf"^{re.escape(str(pkg))}: code/sim_parts.py: damaged \(.*\); refused$"):
        verify_package(pkg)

    pkg.write_bytes(b"not a zip")
    with pytest.raises(PackageError, match=r": not a zip archive \("):
        verify_package(pkg)


BUILD_ERRORS = {
    "missing entry": (["-ep", "nope.py"], "entry nope.py: no such file in SOURCE_DIR {code}"),
    "entry outside": (["-ep", "../meta.json"], "entry ../meta.json: no such file in SOURCE_DIR {code}"),
    "missing source": (["-sf", "{tmp}/missing"], "SOURCE_DIR {tmp}/missing: no such folder"),
    "missing config": (["-cf", "{tmp}/missing"], "CONFIG_DIR {tmp}/missing: no such folder"),
    "bad version": (
        ["-v", "1.0 beta"],
        "version '1.0 beta': use letters, digits and . _ + - (it names the package file)",
    ),
}


@pytest.mark.parametrize("case", list(BUILD_ERRORS))
def test_build_mistakes_exit_2_with_one_line(tmp_path: Path, capsys, case: str):
    code, config = sources(tmp_path)
    base = {"-t": "server", "-sf": str(code), "-ep": "sim_parts.py", "-cf": str(config), "-df": str(tmp_path / "d")}
    change, message = BUILD_ERRORS[case]
    base[change[0]] = change[1].format(tmp=tmp_path)
    rc, out, err = run(["build", *[x for kv in base.items() for x in kv]], capsys)
    assert (rc, out) == (2, [])
    assert err == [f"flruntime: error: {message.format(code=code, tmp=tmp_path)}"]
    assert not (tmp_path / "d").exists()


def test_build_usage_errors(tmp_path: Path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["build", "-t", "edge", "-sf", ".", "-ep", "x.py", "-cf", ".", "-df", str(tmp_path)])
    assert exc.value.code == 2
    assert "argument -t/--type: invalid choice: 'edge'" in capsys.readouterr().err


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("pkgfed")
    federation = Federation(root, ["site-1", "site-2"], env={"FLRUNTIME_STATS_INTERVAL": "0.5"})
    federation.start("server")
    federation.wait_log("server", r"listening on port")
    for site in ("site-1", "site-2"):
        federation.start(site)
        federation.wait_log("server", rf"client '{site}' \(org \w+\) registered")
    yield federation
    federation.stop_all()


@pytest.mark.slow
def test_build_submit_to_a_federation_and_plot_the_download(fed: Federation, tmp_path: Path, capsys):
    from flruntime.federation import AdminSession
    from flruntime.plots import png_info

    pkg = build(tmp_path, version="1.0.1")
    admin = str(fed.kit("admin@acme.org"))
    rc, out, err = run(["job", "submit", "-j", str(pkg), "--wait", "--timeout", "180", "--kit", admin], capsys)
    assert rc == 0, (out, err, fed.log("server")[-3000:])
    job_id = out[0].removeprefix("submitted job ")
    assert out == [f"submitted job {job_id}", f"job {job_id}: FINISHED:COMPLETED"]
    with AdminSession(admin) as session:
        record = session.job(job_id)
        assert (record["name"], record["rounds"]) == ("job", 2)

        # a tampered package never reaches the server
        rezip(pkg, _changed)
        with pytest.raises(PackageError) as exc:
            session.submit(pkg)
        assert (
            str(exc.value)
            == f"{pkg}: its SHA-256 does not match {pkg.name}.sha256; the package was changed after it was built"
        )
        (pkg.parent / f"{pkg.name}.sha256").unlink()
        with pytest.raises(PackageError, match="code/sim_parts.py: SHA-256 differs from MANIFEST.json"):
            session.submit(pkg)
        assert [r["job_id"] for r in session.list_jobs()] == [job_id]
        folder = session.download(job_id, tmp_path / "download")

    rc, out, err = run(["plot", str(folder)], capsys)
    assert rc == 0, err
    assert str(folder / "plots" / "system_metrics.png") in out
    system = png_info(folder / "plots" / "system_metrics.png")
    assert [a["ylabel"] for a in system["axes"]] == ["CPU %", "RSS MiB"]
    assert set(system["axes"][0]["lines"]) == {"site-1", "site-2"}
    assert all(n >= 1 for n in system["axes"][0]["lines"].values())
