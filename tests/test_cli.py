"""The command line as a whole: help for every command, exit codes for bad arguments."""
import subprocess
import sys
from pathlib import Path

import pytest

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


def test_checking_a_spec_loads_neither_training_nor_torch():
    """What `graphnet check` imports (its start-up time is mostly imports); networkx it needs,
    for the graph's topological sort."""
    code = ("import sys; from graphnet.cli import main; status = main(['check', sys.argv[1]]); "
            "print(status, *sorted(sys.modules))")
    output = subprocess.run([sys.executable, "-c", code, str(SPECS / "lenet5.toml")],
                            capture_output=True, text=True, check=True).stdout
    status, *modules = output.splitlines()[-1].split()
    assert status == "0"
    loaded = set(modules)
    for heavy in ("torch", "graphnet.train", "graphnet.engine", "graphnet.inspection",
                  "graphnet.export.torch", "onnx", "rich.progress", "urllib.request"):
        assert heavy not in loaded, heavy


def test_building_the_full_parser_loads_no_command_dependencies():
    """`graphnet --help` lists every command without importing what running them needs."""
    code = ("import sys; from graphnet.cli import build_parser; build_parser(); "
            "print(*sorted(sys.modules))")
    loaded = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                check=True).stdout.split())
    for heavy in ("networkx", "torch", "rich", "pluggy", "graphnet.train", "graphnet.render",
                  "graphnet.inspection", "graphnet.registry", "graphnet.bench"):
        assert heavy not in loaded, heavy
