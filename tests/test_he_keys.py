"""``flruntime he keys``: parameters, what each file holds, and how the simulator hands the files to the sites."""

from __future__ import annotations

import io
import stat

import pytest
from hekit import make_keys

from flruntime.cli.main import main
from flruntime.errors import UsageError
from flruntime.he.contexts import fingerprint, load_context
from flruntime.he.keys import CLIENT_CONTEXT, SERVER_CONTEXT, HEParams
from flruntime.runtime.simulator import simulate
from flruntime.templates import create_job

ts = pytest.importorskip("tenseal")


def test_keys_cli_writes_a_public_and_a_secret_context(tmp_path, capsys):
    assert main(["he", "keys", "-w", str(tmp_path / "k")]) == 0
    out = capsys.readouterr().out
    assert f"flruntime simulate JOB_DIR --he-context-dir {tmp_path / 'k'}" in out
    assert "CKKS N=8192, primes 60,40, scale 2**36: 8192 values per ciphertext" in out
    public = ts.context_from((tmp_path / "k" / SERVER_CONTEXT).read_bytes())
    secret = ts.context_from((tmp_path / "k" / CLIENT_CONTEXT).read_bytes())
    assert public.is_public() and not public.is_private() and not public.has_relin_keys()
    assert secret.is_private()
    assert stat.S_IMODE((tmp_path / "k" / CLIENT_CONTEXT).stat().st_mode) == 0o600
    # the same key file gives the same fingerprint however often it is loaded; a new key another one
    first = load_context(tmp_path / "k" / CLIENT_CONTEXT)
    assert fingerprint(ts.context_from((tmp_path / "k" / CLIENT_CONTEXT).read_bytes())) == first.fingerprint
    assert load_context(make_keys(tmp_path / "k2") / CLIENT_CONTEXT).fingerprint != first.fingerprint


def test_keys_cli_parameters_and_startup_kit_layout(tmp_path, capsys):
    folder = tmp_path / "kits"
    args = ["he", "keys", "-w", str(folder), "--poly-modulus-degree", "4096", "--coeff-mod-bit-sizes", "49,30,30"]
    assert main([*args, "--scale-bits", "30", "--sites", "site-1,site-2"]) == 0
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*.tenseal"))
    assert files == [
        "server/startup/server_context.tenseal",
        *(f"site-{k}/startup/client_context.tenseal" for k in (1, 2)),
    ]
    assert load_context(folder / "site-1" / "startup" / CLIENT_CONTEXT).slots == 4096  # two values per complex slot


def test_keys_cli_refuses_to_replace_a_key_without_force(tmp_path, capsys):
    make_keys(tmp_path)
    assert main(["he", "keys", "-w", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "server_context.tenseal exists: a new key would make what it encrypted unreadable (use --force" in err
    assert main(["he", "keys", "-w", str(tmp_path), "--force"]) == 0


@pytest.mark.parametrize(
    ("params", "text"),
    [
        (HEParams(3000), "poly_modulus_degree must be one of [1024, 2048, 4096, 8192, 16384, 32768], got 3000"),
        (HEParams(8192, (60,)), "coeff_mod_bit_sizes needs at least 2 primes"),
        (HEParams(8192, (60, 70)), "each of coeff_mod_bit_sizes must be 20 to 60 bits"),
        (HEParams(4096, (60, 40, 40)), "add up to 140 bits, above the 109 bits that are secure (128-bit)"),
        (HEParams(8192, (60, 40), 16), "scale_bits must be at least 20"),
        (HEParams(8192, (45, 40, 40), 40), "the first prime (45 bits) must exceed scale_bits (40) by at least 10"),
    ],
    ids=["degree", "one-prime", "prime-too-large", "insecure", "scale-too-small", "no-headroom"],
)
def test_parameters_that_cannot_work_are_refused(params, text):
    with pytest.raises(ValueError) as info:
        params.check()
    assert text in str(info.value)


def he_job(tmp_path):
    return create_job("fedavg_he_pt", tmp_path / "job", overrides={"num_rounds": 1, "num_sites": 2})


def test_simulate_makes_a_key_for_an_he_job_run_without_one(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("FLRUNTIME_HE_DIR", raising=False)
    ws = tmp_path / "ws"
    assert main(["simulate", str(he_job(tmp_path)), "-n", "2", "-w", str(ws)]) == 0
    err = capsys.readouterr().err.splitlines()
    line = f"HE: no --he-context-dir given: made a CKKS context for this run in {ws / 'he_context'}"
    assert err[0] == line
    assert err[-1].startswith("job: FINISHED:COMPLETED after 1 round(s)")
    assert line in (ws / "server" / "log.txt").read_text()
    # as 'flruntime he keys' writes them, installed as --he-context-dir installs them
    assert sorted(p.name for p in (ws / "he_context").iterdir()) == [CLIENT_CONTEXT, SERVER_CONTEXT]
    assert [p.name for p in (ws / "server" / "startup").iterdir()] == [SERVER_CONTEXT]
    assert load_context(ws / "server" / "startup" / SERVER_CONTEXT).private is False
    for site in ("site-1", "site-2"):
        secret = ws / site / "startup" / CLIENT_CONTEXT
        assert [p.name for p in secret.parent.iterdir()] == [CLIENT_CONTEXT]
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600
        assert secret.read_bytes() == (ws / "he_context" / CLIENT_CONTEXT).read_bytes()
    assert load_context(ws / "site-1" / "startup" / CLIENT_CONTEXT).private


def test_simulate_makes_no_key_when_flruntime_he_dir_names_the_keys(tmp_path, monkeypatch):
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("FLRUNTIME_HE_DIR", str(tmp_path / "empty"))
    with pytest.raises(UsageError) as info:
        simulate(he_job(tmp_path), n_clients=2, workspace=tmp_path / "ws", progress=None)
    assert str(info.value).startswith("server: server_context.tenseal not found (looked in ")
    assert "create keys with 'flruntime he keys -w DIR'" in str(info.value)
    assert not (tmp_path / "ws" / "he_context").exists()


def test_simulate_refuses_a_secret_context_for_the_server(tmp_path):
    keys = make_keys(tmp_path / "keys")
    (keys / SERVER_CONTEXT).write_bytes((keys / CLIENT_CONTEXT).read_bytes())
    with pytest.raises(UsageError) as info:
        simulate(he_job(tmp_path), n_clients=2, workspace=tmp_path / "ws", progress=None, he_context_dir=keys)
    assert str(info.value).startswith(
        "server: server_context.tenseal holds a secret key; the server must only get the public context"
    )


def test_simulate_names_a_key_folder_without_contexts(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code = main(
        [
            "simulate",
            str(he_job(tmp_path)),
            "-n",
            "2",
            "-w",
            str(tmp_path / "ws"),
            "--he-context-dir",
            str(tmp_path / "empty"),
        ]
    )
    assert code == 2
    assert (
        f"--he-context-dir {tmp_path / 'empty'} has no server_context.tenseal: create the keys with"
        in capsys.readouterr().err
    )


@pytest.mark.slow
def test_an_he_job_resumes_from_its_encrypted_global_model(tmp_path):
    from flruntime.he.keys import write_keys

    write_keys(tmp_path / "keys")
    first = create_job("fedavg_he_pt", tmp_path / "two", overrides={"num_rounds": 2, "num_sites": 2})
    ws = tmp_path / "ws"
    assert simulate(first, n_clients=2, workspace=ws, he_context_dir=tmp_path / "keys", progress=None).ok
    longer = create_job("fedavg_he_pt", tmp_path / "four", overrides={"num_rounds": 4, "num_sites": 2})
    result = simulate(longer, n_clients=2, workspace=ws, he_context_dir=tmp_path / "keys", resume=True, progress=None)
    assert result.ok, result.error
    assert [m["round"] for m in result.round_metrics] == [2, 3]
    # the clients decrypted the resumed (encrypted) global model: it still classifies well
    assert result.round_metrics[0]["val_acc"] > 0.5


@pytest.mark.slow
def test_a_resumed_he_job_keeps_the_key_made_for_its_first_run(tmp_path, monkeypatch):
    monkeypatch.delenv("FLRUNTIME_HE_DIR", raising=False)
    ws, out = tmp_path / "ws", io.StringIO()
    first = create_job("fedavg_he_pt", tmp_path / "two", overrides={"num_rounds": 2, "num_sites": 2})
    assert simulate(first, n_clients=2, workspace=ws, progress=None).ok
    key = (ws / "he_context" / CLIENT_CONTEXT).read_bytes()
    longer = create_job("fedavg_he_pt", tmp_path / "four", overrides={"num_rounds": 4, "num_sites": 2})
    result = simulate(longer, n_clients=2, workspace=ws, resume=True, progress=out)
    assert result.ok, result.error
    assert out.getvalue().splitlines()[0] == (
        f"HE: no --he-context-dir given: the resumed run keeps its CKKS context ({ws / 'server' / 'startup'})"
    )
    assert (ws / "site-2" / "startup" / CLIENT_CONTEXT).read_bytes() == key
    assert result.round_metrics[0]["val_acc"] > 0.5  # the resumed (encrypted) global model was decrypted
