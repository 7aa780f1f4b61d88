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
