"""The README's promises: its plugin walkthrough is exactly the example file, which works."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_readme_opens_with_the_two_commands():
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert "graphnet train" in blocks[0] and "pip install -e ." in blocks[0]
    assert 'pip install -e ".[test]"' in blocks[1] and "pytest" in blocks[1]


def test_plugin_walkthrough_is_the_example_file_verbatim():
    readme = (ROOT / "README.md").read_text()
    source = (ROOT / "plugins" / "examples" / "prelu.py").read_text().rstrip("\n")
    assert f"```python\n{source}\n```" in readme


def test_the_walkthrough_plugin_works_in_a_spec(tmp_path, run_cli):
    spec = tmp_path / "net.toml"
    spec.write_text('[inputs]\nimage = { shape = [2, 6, 6] }\nlabel = { shape = [], dtype = "int64" }\n'
                    '[[nodes]]\nname = "conv"\nop = "conv2d"\ninputs = ["image"]\nfilters = 3\n'
                    'kernel = 3\n[[nodes]]\nname = "act"\nop = "prelu"\n[[nodes]]\nname = "fc"\n'
                    'op = "dense"\nunits = 4\n[[nodes]]\nname = "loss"\n'
                    'op = "softmax_cross_entropy"\ninputs = ["fc", "label"]\n'
                    '[outputs]\nlogits = "fc"\nloss = "loss"\n')
    plugin = ROOT / "plugins" / "examples" / "prelu.py"
    status, out, err = run_cli("gradcheck", spec, "--plugin", plugin)
    assert status == 0, out + err
    assert "prelu" in out and "all gradients agree" in out


def test_the_test_extra_installs_what_every_other_extra_does():
    """The README's test command installs `.[test]`: it must bring every optional dependency
    the suite uses, so that a new user runs the same suite as CI (which runs that command)."""
    import tomllib
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    included = set()
    for requirement in extras["test"]:
        name, _, bracket = requirement.partition("[")
        if name == project["name"]:
            included |= set(bracket.rstrip("]").split(","))
    assert included == set(extras) - {"test"}, "add the new extra to the test extra"
    ci = (ROOT / ".ci" / "run").read_text()
    assert 'pip install --quiet -e ".[test]"' in ci and "python -m pytest" in ci


def test_install_hints_name_the_distribution_on_the_index():
    from graphnet.text import DISTRIBUTION, install_hint
    import tomllib
    assert tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["name"] == DISTRIBUTION
    assert install_hint("torch").startswith("install the torch extra: pip install "
                                            "'graphnet-cnn[torch]'")


def test_the_tour_writes_the_images_it_then_predicts_on(tmp_path, run_cli, monkeypatch):
    """The tour's `predict … images.npz` can be followed: an earlier line writes images.npz
    (run here as written) in the shape the tour's spec takes."""
    import shlex

    from graphnet.graph import load
    from graphnet.inference import read_images

    tour = re.findall(r"## A tour\n\n```bash\n(.*?)```", (ROOT / "README.md").read_text(),
                      re.S)[0].splitlines()
    commands = [shlex.split(line.split("#")[0]) for line in tour]
    sample = next(i for i, words in enumerate(commands) if words[1:3] == ["data", "sample"])
    predict = next(i for i, words in enumerate(commands)
                   if words[1] == "predict" and "images.npz" in words)
    assert sample < predict
    monkeypatch.chdir(tmp_path)
    status, out, err = run_cli(*commands[sample][1:])
    assert status == 0, err
    spec = load(ROOT / commands[predict][2])
    images = read_images(tmp_path / "images.npz", spec.nodes["image"].shape)
    assert len(images) == 8
