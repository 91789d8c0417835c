"""The provider seam's shared helpers: how a failed call is sorted into transient (retried) and
permanent (dead at once), and how answers and ids are read."""
from __future__ import annotations

import sys
import unicodedata
from typing import Any

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st
from marshmallow import EXCLUDE, Schema, ValidationError, fields, post_load

from receiver.errors import PermanentProviderError, TransientProviderError
from receiver.providers import (
    CONTROL_CATEGORIES,
    FAMILIES,
    KEPT_HEADERS,
    OrderRef,
    Push,
    answer_data,
    as_int,
    dajisaas,
    family_for,
    first_field,
    has_control,
    loader,
    order_records,
    plain_text,
    post_json,
    request_json,
    xportcn,
)

pytestmark = pytest.mark.unit

URL = "https://api.example/alibaba/order/page"
CODES = frozenset({429, *range(500, 600)})


class FakeHttp:
    """Answers every call with one status and body, or raises one error; records the calls."""

    def __init__(self, status: int = 200, body: Any = None, text: str = "", error: Exception | None = None) -> None:
        self.status, self.body, self.text, self.error = status, body, text, error
        self.calls: list[tuple[str, str, dict[str, Any]]] = []

    def _answer(self, method: str, url: str, **kwargs: Any) -> Any:
        self.calls.append((method, url, kwargs))
        if self.error:
            raise self.error
        fake = self

        class Resp:
            status_code = fake.status
            text = fake.text

            def json(self) -> Any:
                if isinstance(fake.body, Exception):
                    raise fake.body
                return fake.body

        return Resp()

    def get(self, url: str, **kwargs: Any) -> Any:
        return self._answer("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> Any:
        return self._answer("POST", url, **kwargs)


# --- request_json: transient or permanent --------------------------------------------------------
@pytest.mark.parametrize(
    ("http", "message"),
    [
        (FakeHttp(error=requests.ReadTimeout("read timed out")), f"timeout after 2.5s: {URL}"),
        (FakeHttp(error=requests.ConnectTimeout("connect timed out")), f"timeout after 2.5s: {URL}"),
        (FakeHttp(error=requests.ConnectionError("refused")), f"connection failed: {URL}"),
        (FakeHttp(429), f"HTTP 429 from {URL}"),
        (FakeHttp(500), f"HTTP 500 from {URL}"),
        (FakeHttp(502), f"HTTP 502 from {URL}"),
        (FakeHttp(599), f"HTTP 599 from {URL}"),
    ],
    ids=["read timeout", "connect timeout", "connection refused", "429", "500", "502", "599"],
)
def test_failures_worth_retrying_are_transient(http: FakeHttp, message: str) -> None:
    with pytest.raises(TransientProviderError) as err:
        request_json(http, "POST", URL, {}, 2.5, json={"pageNum": 1})  # type: ignore[arg-type]
    assert err.value.message == message


@pytest.mark.parametrize("status", [301, 302, 400, 401, 403, 404, 428, 430, 499])
def test_other_statuses_are_permanent_and_quote_the_answer(status: int) -> None:
    http = FakeHttp(status, text="签名错误 " + "x" * 300)
    with pytest.raises(PermanentProviderError) as err:
        request_json(http, "POST", URL, {}, 2.5)  # type: ignore[arg-type]
    assert err.value.message == f"HTTP {status} from {URL}: " + ("签名错误 " + "x" * 300)[:200]


def test_an_answer_that_is_not_json_is_permanent() -> None:
    with pytest.raises(PermanentProviderError, match=f"answer from {URL} is not JSON"):
        request_json(FakeHttp(200, body=ValueError("Expecting value")), "GET", URL, {}, 2.5)  # type: ignore[arg-type]


def test_a_call_goes_out_as_asked_and_never_follows_a_redirect() -> None:
    http = FakeHttp(200, body={"code": 200, "data": []})
    assert request_json(http, "GET", URL, {"access-key": "ak"}, 2.5, params={"refundId": "TQ1234"}) == {"code": 200, "data": []}  # type: ignore[arg-type]
    assert post_json(http, URL, {"pageNum": 2}, {"timestamp": "1"}, 4.0) == {"code": 200, "data": []}  # type: ignore[arg-type]
    (m1, u1, k1), (m2, u2, k2) = http.calls
    assert (m1, u1, k1) == ("GET", URL, {"json": None, "params": {"refundId": "TQ1234"}, "headers": {"access-key": "ak"},
                                         "timeout": 2.5, "allow_redirects": False})
    assert (m2, u2, k2) == ("POST", URL, {"json": {"pageNum": 2}, "params": None, "headers": {"timestamp": "1"},
                                          "timeout": 4.0, "allow_redirects": False})


# --- answer_data: the code in the body -----------------------------------------------------------
def test_a_success_code_gives_the_data() -> None:
    assert answer_data({"code": 200, "msg": "成功", "data": {"total": 2}}, "msg", CODES) == {"total": 2}
    assert answer_data({"code": 0, "message": "ok", "data": [1]}, "message", CODES, success=0) == [1]
    assert answer_data({"code": 200}, "msg", CODES) is None


@pytest.mark.parametrize(("code", "error"), [(429, TransientProviderError), (500, TransientProviderError), (503, TransientProviderError),
                                             (599, TransientProviderError), (401, PermanentProviderError), (1001, PermanentProviderError),
                                             (600, PermanentProviderError), ("500", PermanentProviderError), (None, PermanentProviderError)])
def test_an_error_code_is_transient_only_when_listed(code: Any, error: type[Exception]) -> None:
    with pytest.raises(error) as err:
        answer_data({"code": code, "msg": "服务繁忙", "message": "other"}, "msg", CODES)
    assert err.value.message == f"provider code {code}: 服务繁忙"  # type: ignore[attr-defined]


@pytest.mark.parametrize("answer", [[], "ok", None, {"data": []}, {"msg": "no code"}])
def test_an_answer_without_a_code_is_permanent(answer: Any) -> None:
    with pytest.raises(PermanentProviderError) as err:
        answer_data(answer, "msg", CODES)
    assert err.value.message == "answer has no code"


# --- order_records and as_int ------------------------------------------------------------------
def test_order_records() -> None:
    assert order_records(None, "data") == []
    assert order_records([], "data") == []
    assert order_records([{"tbOrderId": 1}], "data") == [{"tbOrderId": 1}]


@pytest.mark.parametrize("records", [{"tbOrderId": 1}, [{"tbOrderId": 1}, "x"], "[]", 3])
def test_order_records_refuses_anything_but_a_list_of_objects(records: Any) -> None:
    with pytest.raises(PermanentProviderError, match="answer data.result is not a list of orders"):
        order_records(records, "data.result")


@pytest.mark.parametrize(("value", "number"), [(6330, 6330), ("6330", 6330), (" 745 ", 745), ("-155", -155), (-155, -155),
                                               (None, 0), (0, 0)])
def test_as_int_reads_integers_and_digit_strings(value: Any, number: int) -> None:
    assert as_int(value, "purchaseAmount") == number


@pytest.mark.parametrize("value", [True, False, 63.3, "63.30", "", "1e3", "X12", [1], {"fen": 1}])
def test_as_int_refuses_what_is_no_integer_naming_the_field(value: Any) -> None:
    with pytest.raises(PermanentProviderError) as err:
        as_int(value, "purchaseAmount")
    assert err.value.message == f"purchaseAmount is not an integer: {value!r}"


# --- text checks -------------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["12\x0034", "a\nb", "a\rb", "x\u2028y", "x\u2029y", "\u200bzero-width", "lone \ud800", "\x7f"])
def test_control_characters_are_found(text: str) -> None:
    assert has_control(text)
    with pytest.raises(ValidationError, match="must not contain control characters"):
        plain_text(text)


@pytest.mark.parametrize("text", ["2542285634920880794", "ORDER_BUYER_VIEW_ORDER_PAY", "工装短裤 x 3", "a b", ""])
def test_plain_text_passes(text: str) -> None:
    assert not has_control(text)
    plain_text(text)


def test_control_characters_are_exactly_those_categories_in_all_of_unicode() -> None:
    # has_control looks closer only at text that is not printable: nothing of these categories may pass it.
    missed = [hex(c) for c in range(sys.maxunicode + 1) if has_control(chr(c)) != (unicodedata.category(chr(c)) in CONTROL_CATEGORIES)]
    assert missed == []
    assert not has_control("no-break\u00a0space") and has_control("no-break\u00a0space\u200e")


def test_first_field_names_the_first_bad_field_or_the_default() -> None:
    assert first_field(ValidationError({"messagePlatform": ["bad"], "timestamp": ["bad"]}), "body") == "messagePlatform"
    assert first_field(ValidationError("not an object"), "body") == "body"
    assert first_field(ValidationError({}), "body") == "body"


# --- Push and the registry ---------------------------------------------------------------------
def test_a_push_is_actionable_only_when_it_names_an_order_and_is_not_ignored() -> None:
    ref = OrderRef("1688", "2542285634920880794")
    assert Push("T", "price", "k", ref).actionable
    assert not Push("T", "price", "k", ref, ignored="cannot be looked up").actionable
    assert not Push("T", "price", "k", None).actionable


def test_the_registry_holds_both_families_by_name() -> None:
    assert family_for("xportcn").name == "xportcn" and family_for("dajisaas").name == "dajisaas"
    with pytest.raises(KeyError):
        family_for("alibaba")


def test_each_family_comes_with_a_loopback_provider_built_from_a_sources_credentials() -> None:
    xport = FAMILIES["xportcn"].sandbox({"access_key": "ak", "access_secret": "secret", "user_id": "42", "portal": "thai"})
    assert (xport.family, xport.portal, xport.user_id) == ("xportcn", "thai", "42")  # type: ignore[attr-defined]
    daji = FAMILIES["dajisaas"].sandbox({"app_key": "ak", "app_secret": "secret", "signature_scheme": "query-md5"})
    assert (daji.family, daji.signature_scheme) == ("dajisaas", "query-md5")  # type: ignore[attr-defined]
    assert FAMILIES["dajisaas"].sandbox({"app_key": "ak", "app_secret": "secret", "signature_scheme": "any"}).signature_scheme == "name-value-hex-upper"  # type: ignore[attr-defined]


def test_the_inbox_keeps_each_familys_push_headers() -> None:
    assert {"access-key", "nonce-str", "signature", "timestamp", "user-id", "content-type"} <= set(KEPT_HEADERS)
    assert list(KEPT_HEADERS) == sorted(KEPT_HEADERS)


# --- loader: Schema.load's answers, faster ---------------------------------------------------------
class Keyed(Schema):
    """Optional fields with no default, and a field read from another key: what our schemas do not have yet."""

    class Meta:
        unknown = EXCLUDE

    site = fields.String(validate=plain_text)
    platform = fields.Integer(data_key="messagePlatform", strict=True)


SCHEMAS = {"xportcn envelope": xportcn.ENVELOPE, "dajisaas message": dajisaas.MESSAGE, "dajisaas taobao": dajisaas.TAOBAO_MESSAGE,
           "keyed": Keyed()}
JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
GOOD = {"messageType": "ORDER_CANCEL", "messageBody": '{"orderId": "25"}', "messagePlatform": 1, "timestamp": "1779263269913",
        "msgId": 3001, "type": "ORDER_BUYER_VIEW_BUYER_MAKE", "data": {"orderId": 25}, "message_type": 8, "seller_id": "s1",
        "site": "tmall"}


def outcome(load: Any, data: dict[str, Any]) -> Any:
    try:
        return ("loaded", load(data))
    except ValidationError as err:
        return ("refused", err.messages)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(name=st.sampled_from(sorted(SCHEMAS)), changes=st.dictionaries(st.sampled_from(sorted(GOOD) + ["other"]), JSONISH, max_size=4),
       dropped=st.sets(st.sampled_from(sorted(GOOD)), max_size=3))
def test_a_loader_answers_as_its_schema(name: str, changes: dict[str, Any], dropped: set[str]) -> None:
    schema = SCHEMAS[name]
    data = {k: v for k, v in {**GOOD, **changes}.items() if k not in dropped}
    assert outcome(loader(schema), data) == outcome(schema.load, data)


def test_a_schema_with_hooks_or_that_keeps_unknown_keys_has_no_loader() -> None:
    class Strict(Schema):
        name = fields.String()

    class Hooked(Schema):
        class Meta:
            unknown = EXCLUDE

        name = fields.String()

        @post_load
        def upper(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
            return {k: v.upper() for k, v in data.items()}

    for schema in (Strict(), Hooked()):
        with pytest.raises(ValueError, match="needs Schema.load"):
            loader(schema)
