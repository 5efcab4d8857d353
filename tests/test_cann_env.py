"""The launch scripts on a CANN machine: env_npu.sh sources CANN's set_env.sh, which appends to
PYTHONPATH and LD_LIBRARY_PATH without defaults, under the scripts' ``set -euo pipefail``; and
the network interfaces a multi-node run is given (GLOO_SOCKET_IFNAME, HCCL_IF_IP).

A fake CANN root (ASCEND_CANN_ROOT) holds a set_env.sh of CANN's shape; PYTHONPATH and
LD_LIBRARY_PATH are removed from the environment, as on a fresh login. The real tiny runs of
every launch script under such a root are tests/test_scripts.py's (its ``script`` helper)."""
import glob
import os
import socket

import pytest

from conftest import REPO, assert_user_error, make_fake_cann, run

SCRIPTS = sorted(os.path.relpath(path, REPO)
                 for path in glob.glob(os.path.join(REPO, "*", "test", "*.sh")))

@pytest.fixture
def cann(tmp_path, monkeypatch):
    """A fake CANN root (its python and lib folders do not exist, so python is unaffected),
    pointed at by ASCEND_CANN_ROOT; returns a function giving what its set_env.sh recorded."""
    root = make_fake_cann(str(tmp_path / "Ascend"))
    for name in ("PYTHONPATH", "LD_LIBRARY_PATH", "GLOO_SOCKET_IFNAME", "HCCL_IF_IP"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ASCEND_CANN_ROOT", str(root))

    def sourced():
        marker = os.path.join(root, "sourced.txt")
        return open(marker).read().splitlines() if os.path.exists(marker) else []
    sourced.root = root
    return sourced


# A dry run reads no data: any existing folder as --data_path spares it generating the
# synthetic dataset (2 s of python per script); the tiny runs below use the synthetic one.
NO_DATA = f"--data_path={REPO}"


def launch(script, *args, env=None, check=True):
    """Run <model>/test/<name>.sh from its model directory, as the README does."""
    model, _, name = script.split(os.sep)
    return run(["bash", f"test/{name}", *args], cwd=os.path.join(REPO, model), env=env,
               check=check)


def test_every_script_is_here():
    assert len(SCRIPTS) == 25  # 6 per model and PSPNet's train_val_8p.sh


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_under_cann(script, cann):
    proc = launch(script, "--help")
    assert proc.stdout.startswith("usage: ") and "--nnodes" in proc.stdout


@pytest.mark.parametrize("script", SCRIPTS)
def test_dry_run_under_cann(script, cann):
    """Through set_env.sh, argument assembly and the port check to the launch line."""
    proc = launch(script, "--dry_run", NO_DATA)
    assert "train.py" in proc.stdout.splitlines()[-1], proc.stdout
    # sourced once, and appended to the unset variables (hence the trailing ':')
    assert cann() == [f"PYTHONPATH={cann.root}/python/site-packages: "
                              f"LD_LIBRARY_PATH={cann.root}/lib64:"]


def test_env_npu_keeps_the_callers_options(cann):
    show = 'printf "%s|%s|%s|%s\\n" "$-" "$(shopt -qo pipefail && echo pf)" "$PYTHONPATH" ' \
           '"$LD_LIBRARY_PATH"'
    strict = run(["bash", "-c", f"set -euo pipefail; source env_npu.sh; {show}"]).stdout
    flags, pipefail, pythonpath, ld_path = strict.strip().split("|")
    assert {"e", "u"} <= set(flags) and pipefail == "pf"
    # the empty entry left by appending to an unset variable (the current directory) is gone
    assert pythonpath == f"{cann.root}/python/site-packages"
    assert ld_path == f"{cann.root}/lib64"
    lax = run(["bash", "-c", f"source env_npu.sh; {show}"]).stdout
    assert not {"e", "u"} & set(lax.split("|")[0])
    assert len(cann()) == 2


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def multi_node(master, env=None, check=True):
    """Node 0's dry run of a two-node 8p performance run."""
    return launch("BiSeNetV1/test/train_performance_8p.sh", "--dry_run", NO_DATA,
                  "--nnodes=2", "--node_rank=0", f"--master_port={free_port()}",
                  f"--master_addr={master}", env=env, check=check)


def interfaces(proc):
    """GLOO_SOCKET_IFNAME and HCCL_IF_IP as the dry run's launch line sets them."""
    words = proc.stdout.splitlines()[-1].split()
    return dict(word.split("=", 1) for word in words[:words.index("python3")])


def test_multi_node_interfaces_follow_the_route(cann):
    proc = multi_node("127.0.0.1")  # two nodes on one host: loopback
    assert interfaces(proc) == {"GLOO_SOCKET_IFNAME": "lo", "HCCL_IF_IP": "127.0.0.1"}
    # single node: left to gloo and HCCL (which skips docker and loopback NICs)
    proc = launch("BiSeNetV1/test/train_performance_8p.sh", "--dry_run", NO_DATA)
    assert interfaces(proc) == {}
    # what the user set is kept
    proc = multi_node("127.0.0.1", env={"GLOO_SOCKET_IFNAME": "eth9", "HCCL_IF_IP": "10.9.9.9"})
    assert interfaces(proc) == {"GLOO_SOCKET_IFNAME": "eth9", "HCCL_IF_IP": "10.9.9.9"}
    proc = multi_node("127.0.0.1", env={"GLOO_SOCKET_IFNAME": "eth9"})
    assert interfaces(proc) == {"GLOO_SOCKET_IFNAME": "eth9", "HCCL_IF_IP": "127.0.0.1"}


def test_node_0_uses_its_network_interface_not_loopback(cann):
    """On node 0 the route to its own address is `local ... dev lo`; gloo must bind to the
    interface holding that address, which the other nodes reach."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: looks a route up, sends nothing
        except OSError:
            pytest.skip("no route off this host")
        address = s.getsockname()[0]
    got = interfaces(multi_node(address))
    assert got["HCCL_IF_IP"] == address and got["GLOO_SOCKET_IFNAME"] != "lo"
    assert got["GLOO_SOCKET_IFNAME"] in {name for _, name in socket.if_nameindex()}


@pytest.mark.parametrize("master, fragment", [
    ("localhost", "a loopback address the other nodes cannot reach"),  # the 127.0.1.1 hostname trap
    ("no-such-host.invalid", "no route from this node to --master_addr=no-such-host.invalid"),
])
def test_multi_node_without_a_usable_route_says_what_to_set(cann, master, fragment):
    proc = multi_node(master, check=False)
    assert_user_error(proc, fragment, "GLOO_SOCKET_IFNAME=", "HCCL_IF_IP=")
    assert cann() == []  # stopped before anything else
