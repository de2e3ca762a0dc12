"""The license, the citation metadata and the package agree; small entry points answer --help."""

import yaml

import pvt_fpn_d2

from .conftest import REPO, run_tool


def test_license_is_the_apache_2_0_text():
    text = (REPO / "LICENSE").read_text()
    assert text.split()[:4] == ["Apache", "License", "Version", "2.0,"]
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text
    assert text.rstrip().endswith("limitations under the License.")


def test_citation_cff_describes_this_version():
    cff = yaml.safe_load((REPO / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0"
    assert cff["version"] == pvt_fpn_d2.__version__
    assert cff["license"] == "Apache-2.0"
    assert cff["authors"] == [{"name": "The pvt_fpn_d2 authors"}]
    titles = [r["title"] for r in cff["references"]]
    assert titles == ["PVT v2: Improved Baselines with Pyramid Vision Transformer", "Detectron2"]
    for ref in cff["references"]:
        assert ref["authors"] and ref["year"]


def test_model_zoo_table_help_prints_usage_not_the_table():
    out = run_tool("tools/model_zoo_table.py", "--help").stdout
    assert out.startswith("usage: model_zoo_table.py")
    assert "| config |" not in out
