"""The op contract's attribute parsing (graphnet.op)."""
import pytest

from graphnet.errors import SpecError
from graphnet.op import Attr, parse_number_array

TOO_BIG_FOR_A_FLOAT = 10 ** 400  # JSON integers have no bound


def test_a_float_attribute_too_large_for_a_float_is_a_spec_error():
    with pytest.raises(SpecError) as caught:
        Attr("float", default=0.5).parse(TOO_BIG_FOR_A_FLOAT, "rate")
    assert caught.value.field == "rate"


def test_an_array_element_too_large_for_a_float_is_a_spec_error():
    with pytest.raises(SpecError) as caught:
        parse_number_array([[1, TOO_BIG_FOR_A_FLOAT]], "weights")
    assert caught.value.field == "weights"
    assert "finite" in caught.value.expected
