"""The command line as a whole: help for every command, exit codes for bad arguments."""
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

from graphnet import commands
from graphnet.cli import build_parser, main

SPECS = Path(__file__).resolve().parent.parent / "specs"


def subcommands():
    parser = build_parser()
    action = next(a for a in parser._subparsers._group_actions if a.choices)
    return sorted(action.choices)


def test_the_commands_are_all_there():
    assert {"check", "inspect", "ops", "gradcheck", "train", "eval", "predict", "data", "show",
            "bench", "export"} <= set(subcommands())


@pytest.mark.parametrize("command", subcommands())
def test_help_of_every_command(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert command in capsys.readouterr().out


def test_every_command_module_is_a_command():
    """graphnet.commands.NAMES lists the command modules (not discovered, for start-up's
    sake): a module left out of it would be a command nobody can run."""
    modules = {info.name for info in pkgutil.iter_modules(commands.__path__)
               if not info.name.startswith("_")}
    assert sorted(commands.NAMES) == sorted(modules)


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["check"], ["train", "specs/lenet5.toml", "--epochs", "zero"],
                                  ["frobnicate"]])
def test_bad_arguments_exit_2_without_a_traceback(argv, capsys):
    try:
        status = main(argv)          # graphnet's own argument checks return the status
    except SystemExit as exit_info:  # argparse's exit for what it checks itself
        status = exit_info.code
    assert status == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip()


@pytest.mark.parametrize("argv, flag", [
    (["eval", SPECS / "lenet5.toml", "--checkpoint", ""], "--checkpoint"),
    (["train", SPECS / "lenet5.toml", "--init-from", ""], "--init-from"),
    (["train", SPECS / "lenet5.toml", "--run-dir", ""], "--run-dir"),
    (["export", SPECS / "lenet5.toml", "-o", ""], "--output"),
    (["data", "sample", "shapes", "-o", ""], "--output"),
    (["check", SPECS / "lenet5.toml", "--plugin", ""], "--plugin"),
    (["check", ""], "SPEC"),
])
def test_an_empty_argument_is_refused_naming_its_flag(argv, flag, capsys, tmp_path, monkeypatch):
    """An empty argument is mostly an unset shell variable. As a path it was the current
    folder: `eval --checkpoint "$CKPT"` evaluated the newest .npz there (here a decoy),
    `--run-dir ""` trained into runs/, `export -o ""` printed to stdout and exited 0."""
    import numpy as np

    monkeypatch.chdir(tmp_path)
    np.savez(tmp_path / "decoy.npz", images=np.zeros(3))
    assert main([str(word) for word in argv]) == 2
    err = capsys.readouterr().err
    assert f"error: field '{flag}': empty argument: expected a value" in err
    assert "decoy" not in err and sorted(path.name for path in tmp_path.iterdir()) == ["decoy.npz"]


def test_an_unknown_flag_shows_the_usage_of_its_command(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["inspect", "specs/lenet5.toml", "--bogus"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "usage: graphnet inspect" in err and "--rf NODE" in err
    assert "graphnet inspect: error: unrecognized arguments: --bogus" in err


def test_a_reader_that_leaves_early_is_not_a_failed_check():
    import subprocess
    import sys
    reader = subprocess.Popen([sys.executable, "-m", "graphnet.cli", "ops"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    reader.stdout.read(10)
    reader.stdout.close()                   # like `graphnet ops | head -c 10`
    status = reader.wait(timeout=60)
    assert status in (0, 141)               # finished first, or told the pipe was gone
    assert b"Traceback" not in reader.stderr.read()


@pytest.mark.parametrize("command", subcommands())
def test_each_command_is_the_module_of_its_name(command):
    """main() imports only the module named after the command it is given."""
    parser = build_parser(command)
    action = next(a for a in parser._subparsers._group_actions if a.choices)
    assert sorted(action.choices) == [command]


def modules_after(code: str, *args: str, env=None) -> tuple[list[str], set[str]]:
    """Run ``code`` in a fresh interpreter, its output piped; (its output lines, the modules
    loaded at the end). ``code`` may print; the modules go to stderr, last."""
    code += "\nimport sys; print(*sorted(sys.modules), file=sys.stderr)"
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                            check=True, env=env)
    return result.stdout.splitlines(), set(result.stderr.splitlines()[-1].split())


def test_checking_a_spec_loads_neither_training_nor_torch():
    """What `graphnet check` imports (its start-up time is mostly imports); networkx it needs,
    for the graph's topological sort. Its "ok" line going to a pipe needs no rich either."""
    output, loaded = modules_after("import sys; from graphnet.cli import main; "
                                   "print(main(['check', sys.argv[1]]))",
                                   str(SPECS / "lenet5.toml"))
    assert output == [f"ok {SPECS / 'lenet5.toml'}: lenet5: 13 nodes, 61,706 parameters, "
                      "416,520 MACs per sample", "0"]
    assert {"numpy", "networkx"} <= loaded
    for heavy in ("torch", "onnx", "ray", "sklearn", "PIL", "rich", "threadpoolctl",
                  "graphnet.train", "graphnet.training", "graphnet.engine", "graphnet.bench",
                  "graphnet.inspection", "graphnet.export.torch", "graphnet.distributed",
                  "graphnet.data.readers", "graphnet.files", "urllib.request"):
        assert heavy not in loaded, heavy


def test_the_op_catalogue_builds_no_graph():
    """`graphnet ops` lists what the plugins registered: no networkx, no training; and as JSON
    (like `inspect --format json`) it draws no table, so no rich."""
    output, loaded = modules_after("from graphnet.cli import main; main(['ops', '--format', "
                                   "'json'])")
    assert '"name": "conv2d",' in "\n".join(output)
    for heavy in ("networkx", "rich", "torch", "onnx", "ray", "graphnet.graph",
                  "graphnet.engine", "graphnet.train"):
        assert heavy not in loaded, heavy


@pytest.mark.parametrize("argv", [["--help"], [], ["frobnicate"]])
def test_listing_the_commands_loads_none_of_their_dependencies(argv):
    """`graphnet --help` (and a command line naming no command) lists every command by its
    one line without building their parsers: nothing but the standard library and graphnet's
    command modules, numpy not even."""
    output, loaded = modules_after(f"from graphnet.cli import main\ntry: main({argv!r})\n"
                                   "except SystemExit: pass")
    if argv == ["--help"]:
        listed = "\n".join(output)
        for command in subcommands():
            assert f"    {command} " in listed or f"    {command}\n" in listed, command
    for heavy in ("numpy", "networkx", "rich", "pluggy", "graphnet.op", "graphnet.limits",
                  "graphnet.registry"):
        assert heavy not in loaded, heavy


BLAS_THREADS = ("from threadpoolctl import threadpool_info; "
                "print([pool['num_threads'] for pool in threadpool_info() "
                "if pool['internal_api'] == 'openblas'])")


def blas_run(code: str, **env_changes) -> list[str]:
    """``code`` run with the environment's BLAS thread counts replaced by ``env_changes``; its
    output after check's "ok" line: the exit status, OPENBLAS_NUM_THREADS, OpenBLAS's threads."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS")}
    env.update(env_changes)
    code = ("import os, sys; from graphnet.cli import main; " + code
            + "; print(os.environ.get('OPENBLAS_NUM_THREADS')); " + BLAS_THREADS)
    return subprocess.run([sys.executable, "-c", code, str(SPECS / "lenet5.toml")],
                          capture_output=True, text=True, check=True, env=env).stdout.split("\n")[1:]


def test_a_command_that_computes_nothing_starts_no_blas_threads():
    """Run as the program, `graphnet check` loads numpy with OpenBLAS on one thread (its
    worker threads would only spin); the environment a child process would see is the user's,
    a thread count the user set is obeyed, and a call from Python changes nothing."""
    default = subprocess.run([sys.executable, "-c", "import numpy; " + BLAS_THREADS],
                             capture_output=True, text=True, check=True).stdout.strip()
    if default in ("[]", "[1]"):
        pytest.skip(f"numpy's BLAS here is not a multi-threaded OpenBLAS ({default})")
    as_program = "sys.argv = ['graphnet', 'check', sys.argv[1]]; print(main())"
    assert blas_run(as_program)[:3] == ["0", "None", "[1]"]
    assert blas_run(as_program, OPENBLAS_NUM_THREADS="2")[:3] == ["0", "2", "[2]"]
    assert blas_run("print(main(['check', sys.argv[1]]))")[:3] == ["0", "None", default]


def test_building_the_full_parser_loads_no_command_dependencies():
    """`graphnet --help` lists every command without importing what running them needs."""
    code = ("import sys; from graphnet.cli import build_parser; build_parser(); "
            "print(*sorted(sys.modules))")
    loaded = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                check=True).stdout.split())
    for heavy in ("networkx", "torch", "rich", "pluggy", "graphnet.train", "graphnet.render",
                  "graphnet.inspection", "graphnet.registry", "graphnet.bench"):
        assert heavy not in loaded, heavy
