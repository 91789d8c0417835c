"""The Xportcn family's side of the sandbox, played from the providers' published docs.

It is written apart from our client (receiver/providers/xportcn.py) and imports nothing of it: its
own signature check, its own paths per portal, the answer shapes each portal documents (PandaPon's
1688 order page flat, the other lists in the envelope), the documented list filters only (a real
server ignores any other field), a page-size cap, creation-time windows, the 1688 order detail in
1688's own model (yuan, status names, ids as rounded numbers and as strings), the Taobao refund
query, and pushes in the three body shapes the docs show.

Orders are seeded from the docs' examples (000, 001 and 002 in shared/provider-docs, outside this repository), with amounts
made less round so that unit mistakes show.
"""
from __future__ import annotations

import copy
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

CHINA = timezone(timedelta(hours=8))
DOCUMENTED_PORTALS = ("xportcn", "pandapon", "thai")
# Paths per portal, as each portal's pages give them (PUBLISHED-DOCS.md 1c, 1d, 1f); None: not served.
PATHS: dict[str, dict[str, str | None]] = {
    "xportcn": {
        "page": "/alibaba/order/page",
        "detail": None,
        "purchases": "/open/purchase/page",
        "refund": "/open/order/refund/query",
    },
    "pandapon": {
        "page": "/alibaba/order/page",
        "detail": "/alibaba/order/detail",
        "purchases": "/open/purchase/page",
        "refund": "/open/order/refund/query",
    },
    "thai": {
        "page": "/v2/alibaba/order/page",
        "detail": None,
        "purchases": "/open/purchase/page",
        "refund": "/v2/taobao/order/refund/query",
    },
}
# PandaPon's 1688 order page answers `{total, data, code}`; everywhere else a page is the envelope's data.
FLAT_PAGE_PORTALS = frozenset({"pandapon"})
# The body fields each list documents as filters (000, 001, 002); any other is ignored.
PAGE_FILTERS = {
    "xportcn": ("tbOrderId", "orderStatus"),
    "pandapon": ("tbOrderId", "orderStatus"),
    "thai": ("orderNo", "tbOrderId", "orderStatus"),
}
PURCHASE_FILTERS = ("orderNo", "purchaseId", "status", "supplierNick")
PAGE_WINDOW = ("orderTimeBegin", "orderTimeEnd")
PURCHASE_WINDOW = ("beginDateTime", "endDateTime")
DEFAULT_PAGE_SIZE = 20
API_WINDOW_SECONDS = 600  # how far a request's timestamp may be from the provider's clock
# 002: "1-waitbuyerpay;2-waitsellersend;3-waitbuyerreceive;4-confirm_goods;5-success;6-cancel;7-terminated;8-其他"
STATUS_NAMES = {
    1: "waitbuyerpay",
    2: "waitsellersend",
    3: "waitbuyerreceive",
    4: "confirm_goods",
    5: "success",
    6: "cancel",
    7: "terminated",
}
# The message access manual's orderStatus strings for the summary body (the last three are not shown there).
SUMMARY_STATUS = {
    1: "WAITING_FOR_PAYMENT",
    2: "WAITING_FOR_SENT",
    3: "WAITING_FOR_RECEIVE",
    4: "CONFIRM_GOODS",
    5: "SUCCESS",
    6: "CANCEL",
    7: "CANCEL",
}
PLATFORM_CODES = {"taobao": 0, "1688": 1}
SHAPE_PREFIX = {"model": "1688_", "taobao": "TAOBAO_", "summary": ""}
REFUND_SUCCESSFUL = 100

ALIBABA_SEED: list[dict[str, Any]] = [
    {
        "id": "1232742280964604571",
        "developId": "1110890638347337996",
        "flow": "general",
        "orderNo": "1232742280398373686",
        "tbOrderId": "2542285634920880794",
        "discount": 0,
        "productAmount": 22599,
        "shippingFee": 745,
        "totalAmount": 23344,
        "refundAmount": 0,
        "sellerLoginId": "斯嘉丽服装商行",
        "tradeType": "担保交易",
        "payStatus": 1,
        "orderStatus": 1,
        "refundStatus": 0,
        "userId": "2219093763101",
        "createTime": "2025-04-24T17:17:43.000+08:00",
        "tbCreateTime": "2025-04-24T17:17:42.000+08:00",
        "orderDetailInfoVOS": [
            {
                "id": "1232742281220457079",
                "orderId": "1232742280964604571",
                "subTbOrderId": "2542285634920880794",
                "productId": "736985424157",
                "name": "24S跨境欧美潮牌恶魔岛多口袋松紧休闲工装短裤男女沙滩五分裤",
                "quantity": 3,
                "unit": "件",
                "skuId": "5739035294244",
                "specId": "b1f7eb839828d3781406f0a1074de3c9",
                "itemAmount": 22599,
                "price": 7533,
                "refund": 0,
                "status": 1,
            }
        ],
    },
]
TAOBAO_SEED: list[dict[str, Any]] = [
    {
        "id": "30",
        "purchaseId": 200058578338,
        "orderNo": "1192794693444829414",
        "createTime": "2025-01-05 00:00:01",
        "payTime": None,
        "purchaseAmount": 6330,
        "subOrderVOS": [
            {
                "id": "1192794699010671091",
                "orderNo": "1192794693444829414",
                "subOrderStatus": "WAIT_BUYER_P",
                "taobaoRefundOrder": None,
                "subOrderResult": {
                    "purchase_order_outer_id": "2429360295718939689",
                    "purchase_order_line_outer_id": "2429360295718939689",
                    "product_amount": "5980",
                    "quantity": 2,
                    "title": "1363 儿童冬季加绒保暖波浪连裤袜 NM52",
                    "purchase_currency": "CNY",
                    "purchase_amount": 5980,
                    "item_id": "4096193650344292",
                    "domestic_post_fee": 350,
                    "sub_purchase_order_id": "200058578339",
                    "sku_id": "23179458212196",
                    "status": "WAIT_BUYER_P",
                },
                "taobaoPurchaseId": "200058578338",
                "taobaoSubPurchaseId": "200058578339",
                "refundStatus": 0,
                "refundId": None,
            }
        ],
        "userId": "2100008175168",
        "status": 5,
        "orderStatusDesc": "WAIT_BUYER_P",
        "supplierNick": "mgui751",
        "purchaseOrderOuterId": "2429360295718939689",
    },
]
# How an order moves forward, one "status step" at a time.
ALIBABA_STEPS = (1, 2, 3, 4, 5)
TAOBAO_STEPS = (12, 0, 5, 10, 11)
# The push each change causes. The manual documents create, pay, cancel, price and refund; the other
# status moves come under 1688's own topic names, which the receiver has never been told about.
STATUS_PUSH_1688 = {
    1: "ORDER_CREATE",
    2: "ORDER_PAY_SUCCESS",
    3: "ORDER_BUYER_VIEW_ANNOUNCE_SENDGOODS",
    4: "ORDER_BUYER_VIEW_ORDER_COMFIRM_RECEIVEGOODS",
    5: "ORDER_BUYER_VIEW_ORDER_SUCCESS",
    6: "ORDER_CANCEL",
    7: "ORDER_CANCEL",
}
STATUS_PUSH_TAOBAO = {
    12: "ORDER_CREATE",
    0: "ORDER_CREATE",
    5: "ORDER_CREATE",
    10: "ORDER_PAY_SUCCESS",
    11: "ORDER_BUYER_VIEW_ANNOUNCE_SENDGOODS",
    4: "ORDER_CANCEL",
}
PRICE_PUSH = "ORDER_BUYER_VIEW_ORDER_PRICE_MODIFY"
REFUND_PUSH = "ORDER_BUYER_VIEW_ORDER_BUYER_REFUND"
ERROR_SIGNATURE = 401
ERROR_TIMESTAMP = 402
ERROR_NOT_FOUND = 404
ERROR_PARAMETER = 400


def md5_signature(access_key: str, timestamp: str, nonce: str, secret: str) -> str:
    """The provider's own check of a request: MD5, upper-case hex, of key, timestamp, nonce and secret."""
    digest = hashlib.md5()
    for part in (access_key, timestamp, nonce, secret):
        digest.update(part.encode("utf-8"))
    return digest.hexdigest().upper()


def yuan(fen: int) -> float:
    """Fen as the yuan number 1688's model writes: 7533 is 75.33."""
    return float(Decimal(fen) / 100)


def as_double(digits: str) -> int:
    """A long id as it comes out of a JSON double: 2542285634920880794 becomes 2542285634920880640."""
    return int(float(digits))


class XportcnProvider:
    """An Xportcn-family provider holding a few orders, for one account on one portal."""

    family = "xportcn"
    shapes: tuple[str, ...] = ("summary", "model", "taobao")

    def __init__(
        self, access_key: str, access_secret: str, user_id: str, portal: str = "xportcn", page_cap: int = DEFAULT_PAGE_SIZE
    ) -> None:
        if portal not in DOCUMENTED_PORTALS:
            raise ValueError(f"portal must be one of {DOCUMENTED_PORTALS}")
        self.access_key, self.access_secret, self.user_id = access_key, access_secret, user_id
        self.portal, self.page_cap = portal, page_cap
        self.alibaba: dict[str, dict[str, Any]] = {}
        self.taobao: dict[str, dict[str, Any]] = {}
        self.created: dict[str, datetime] = {}
        self.modified: dict[str, datetime] = {}
        self.refunds: dict[str, dict[str, Any]] = {}  # Taobao refund id -> the refund query's data
        self.seen_nonces: set[str] = set()
        self.requests: list[tuple[str, dict[str, Any]]] = []  # (path, body): what was asked, for tests
        for record in ALIBABA_SEED:
            self._hold("1688", str(record["tbOrderId"]), copy.deepcopy(record))
        for record in TAOBAO_SEED:
            self._hold("taobao", str(record["purchaseId"]), copy.deepcopy(record))

    @classmethod
    def for_source(cls, credentials: Mapping[str, Any]) -> XportcnProvider:
        """The provider of an account with a source's credentials (keys as in the sources file)."""
        return cls(
            credentials["access_key"], credentials["access_secret"], credentials["user_id"], credentials.get("portal", "xportcn")
        )

    def _hold(self, platform: str, order_id: str, record: dict[str, Any], created: datetime | None = None) -> None:
        at = created or datetime.now(CHINA)
        (self.alibaba if platform == "1688" else self.taobao)[order_id] = record
        self.created[order_id] = at
        self.modified[order_id] = at
        record["createTime"] = at.isoformat(timespec="milliseconds") if platform == "1688" else at.strftime("%Y-%m-%d %H:%M:%S")

    # --- the API -------------------------------------------------------------------------------
    def error(self, code: int, msg: str) -> dict[str, Any]:
        return {"requestId": uuid.uuid4().hex, "code": code, "developId": "1110890638347337996", "msg": msg, "data": None}

    def _ok(self, data: Any) -> dict[str, Any]:
        answer = self.error(200, "成功")
        answer["data"] = copy.deepcopy(data)
        return answer

    def check_signature(self, headers: Mapping[str, str]) -> dict[str, Any] | None:
        """The provider's check of a request's headers; an error answer, or None when it passes."""
        h = {k.lower(): v for k, v in headers.items()}
        if any(not h.get(name) for name in ("access-key", "timestamp", "user-id", "signature")):
            return self.error(ERROR_SIGNATURE, "missing signature headers")
        nonce = h.get("nonce-str", "")
        expected = md5_signature(self.access_key, h["timestamp"], nonce, self.access_secret)
        if h["access-key"] != self.access_key or not hmac.compare_digest(h["signature"], expected):
            return self.error(ERROR_SIGNATURE, "signature error")
        if not h["timestamp"].isdigit():
            return self.error(ERROR_TIMESTAMP, "bad timestamp")
        stamp = int(h["timestamp"])
        stamp_s = stamp / 1000 if stamp > 10**12 else stamp
        if abs(time.time() - stamp_s) > API_WINDOW_SECONDS:
            return self.error(ERROR_TIMESTAMP, "timestamp expired")
        if nonce:
            if nonce in self.seen_nonces:
                return self.error(ERROR_SIGNATURE, "nonce reused")
            self.seen_nonces.add(nonce)
        return None

    def order_of_request(self, path: str, body: bytes) -> str | None:
        try:
            query = json.loads(body or b"{}")
        except ValueError:
            return None
        if not isinstance(query, dict):
            return None
        for key in ("tbOrderId", "orderId", "purchaseId", "orderNo"):
            if query.get(key) is not None:
                return str(query[key])
        if query.get("refundId") is not None:
            refund = self.refunds.get(str(query["refundId"]))
            return str(refund["refundOrderAggregate"]["purchaseOrderLine"]["purchaseOrderId"]) if refund else None
        return None

    def handle(self, path: str, headers: Mapping[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        if (refused := self.check_signature(headers)) is not None:
            return 200, refused
        try:
            query = json.loads(body or b"{}")
        except ValueError:
            return 200, self.error(ERROR_PARAMETER, "body is not JSON")
        if not isinstance(query, dict):
            return 200, self.error(ERROR_PARAMETER, "body is not a JSON object")
        self.requests.append((path, query))
        paths = PATHS[self.portal]
        if path == paths["page"]:
            return 200, self._order_page(query)
        if path == paths["detail"]:
            return 200, self._order_detail(query)
        if path == paths["purchases"]:
            return 200, self._purchase_page(query)
        if path == paths["refund"]:
            refund = self.refunds.get(str(query.get("refundId")))
            return 200, self._ok(refund) if refund else self.error(ERROR_NOT_FOUND, "售后单不存在")
        return 404, self.error(404, f"no such API {path}")

    def _window(self, query: Mapping[str, Any], keys: tuple[str, str], order_id: str) -> bool:
        """Whether an order was created inside the request's window (China time, either end optional)."""
        created = self.created[order_id].replace(microsecond=0)  # the window is given in whole seconds
        for key, inside in zip(keys, (lambda t: created >= t, lambda t: created <= t), strict=True):
            if query.get(key):
                try:
                    bound = datetime.strptime(str(query[key]), "%Y-%m-%d %H:%M:%S").replace(tzinfo=CHINA)
                except ValueError:
                    return False
                if not inside(bound):
                    return False
        return True

    def _slice(self, query: Mapping[str, Any], records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        size = min(int(query.get("pageSize") or DEFAULT_PAGE_SIZE), self.page_cap)
        start = (max(int(query.get("pageNum") or 1), 1) - 1) * size
        return records[start : start + size]

    def _order_page(self, query: Mapping[str, Any]) -> dict[str, Any]:
        records = [
            o
            for oid, o in self.alibaba.items()
            if _keep(o, query, PAGE_FILTERS[self.portal]) and self._window(query, PAGE_WINDOW, oid)
        ]
        page = self._slice(query, records)
        if self.portal in FLAT_PAGE_PORTALS:
            return {"total": len(records), "data": copy.deepcopy(page), "code": 200}
        return self._ok({"total": len(records), "data": page, "code": 200, "msg": None})

    def _purchase_page(self, query: Mapping[str, Any]) -> dict[str, Any]:
        records = [
            o for oid, o in self.taobao.items() if _keep(o, query, PURCHASE_FILTERS) and self._window(query, PURCHASE_WINDOW, oid)
        ]
        page = [_as_listed(r) for r in self._slice(query, records)]
        return self._ok({"total": len(records), "data": page})

    def _order_detail(self, query: Mapping[str, Any]) -> dict[str, Any]:
        if query.get("webSite") != "1688":
            return self.error(ERROR_PARAMETER, "webSite is required")
        record = self.alibaba.get(str(query.get("orderId")))
        if record is None:
            return self.error(ERROR_NOT_FOUND, "订单不存在")
        return self._ok(self.model(str(record["tbOrderId"])))

    def model(self, order_id: str) -> dict[str, Any]:
        """A 1688 order in 1688's own model, as the order detail answers it and the model push carries it."""
        o = self.alibaba[order_id]
        return {
            "baseInfo": {
                "id": as_double(o["tbOrderId"]),
                "idOfStr": o["tbOrderId"],
                "status": STATUS_NAMES.get(o["orderStatus"], "other"),
                "sumProductPayment": yuan(o["productAmount"]),
                "shippingFee": yuan(o["shippingFee"]),
                "discount": o["discount"],  # 1688 documents the discount in fen
                "totalAmount": yuan(o["totalAmount"]),
                "refund": yuan(o["refundAmount"]),
                "createTime": self.created[order_id].isoformat(timespec="milliseconds"),
                "modifyTime": self.modified[order_id].astimezone(timezone.utc).isoformat(timespec="milliseconds"),
                "sellerLoginId": o.get("sellerLoginId"),
            },
            "productItems": [
                {
                    "subItemID": as_double(d["subTbOrderId"]),
                    "subItemIDString": d["subTbOrderId"],
                    "productID": int(d["productId"]) if str(d["productId"]).isdigit() else d["productId"],
                    "skuID": int(d["skuId"]) if str(d["skuId"]).isdigit() else d["skuId"],
                    "name": d["name"],
                    "quantity": d["quantity"],
                    "price": yuan(d["price"]),
                    "itemAmount": yuan(d["itemAmount"]),
                    "refund": yuan(d["refund"]),
                    "status": STATUS_NAMES.get(d["status"], "other"),
                    "unit": d.get("unit"),
                }
                for d in o["orderDetailInfoVOS"]
            ],
            "tradeTerms": [],
            "nativeLogistics": {},
        }

    # --- orders and what happens to them ------------------------------------------------------
    def order_ids(self) -> list[str]:
        return [*self.alibaba, *self.taobao]

    def platform_of(self, order_id: str) -> str:
        """Which platform holds `order_id`."""
        if order_id in self.alibaba:
            return "1688"
        if order_id in self.taobao:
            return "taobao"
        raise KeyError(f"no order {order_id}")

    def add_orders(self, count: int, platform: str = "1688", created: datetime | None = None) -> list[str]:
        """Clone the seed order `count` times under new ids, for scenarios with many orders."""
        ids = []
        for _ in range(count):
            n = uuid.uuid4().int % 10**18
            if platform == "1688":
                o = copy.deepcopy(ALIBABA_SEED[0])
                o["tbOrderId"], o["orderNo"], o["id"] = f"3{n:018d}", f"PO{n:018d}", str(n)
                o["orderDetailInfoVOS"][0]["subTbOrderId"] = o["tbOrderId"]
                self._hold("1688", o["tbOrderId"], o, created)
                ids.append(o["tbOrderId"])
            else:
                o = copy.deepcopy(TAOBAO_SEED[0])
                o["purchaseId"], o["orderNo"] = 200000000000 + n % 10**11, f"1{n:018d}"
                o["purchaseOrderOuterId"] = f"24{n:017d}"
                o["subOrderVOS"][0]["id"] = f"11{n:017d}"
                self._hold("taobao", str(o["purchaseId"]), o, created)
                ids.append(str(o["purchaseId"]))
        return ids

    def order(self, order_id: str) -> dict[str, Any]:
        """The provider's record of one order (a copy), as its list serves it."""
        if order_id in self.alibaba:
            return copy.deepcopy(self.alibaba[order_id])
        return _as_listed(self.taobao[order_id])

    def _touch(self, order_id: str) -> None:
        self.modified[order_id] = max(datetime.now(CHINA), self.modified[order_id] + timedelta(milliseconds=1))

    def correct_price(self, order_id: str, delta: int = -155) -> str:
        """The seller corrects the price by `delta` fen; returns the push's message type."""
        if self.platform_of(order_id) == "1688":
            o = self.alibaba[order_id]
            o["discount"] -= delta
            o["totalAmount"] += delta
        else:
            self.taobao[order_id]["purchaseAmount"] += delta
        self._touch(order_id)
        return PRICE_PUSH

    def step_status(self, order_id: str) -> str:
        """Move the order one step along its platform's statuses; returns the push's message type."""
        alibaba = self.platform_of(order_id) == "1688"
        o, key, steps = (
            (self.alibaba[order_id], "orderStatus", ALIBABA_STEPS) if alibaba else (self.taobao[order_id], "status", TAOBAO_STEPS)
        )
        i = steps.index(o[key]) if o[key] in steps else len(steps) - 1
        return self.set_status(order_id, steps[min(i + 1, len(steps) - 1)])

    def set_status(self, order_id: str, code: int) -> str:
        """Set the order's status code; returns the push's message type."""
        if self.platform_of(order_id) == "1688":
            o = self.alibaba[order_id]
            o["orderStatus"] = code
            o["payStatus"] = 2 if code in (2, 3, 4, 5) else o["payStatus"]
            for line in o["orderDetailInfoVOS"]:
                line["status"] = code
            self._touch(order_id)
            return STATUS_PUSH_1688.get(code, "ORDER_BUYER_VIEW_ORDER_SELLER_CLOSE")
        self.taobao[order_id]["status"] = code
        self._touch(order_id)
        return STATUS_PUSH_TAOBAO.get(code, "ORDER_BUYER_VIEW_ORDER_SELLER_CLOSE")

    def refund(self, order_id: str, amount: int = 515) -> str:
        """The buyer gets `amount` fen back on the first line; returns the push's message type."""
        if self.platform_of(order_id) == "1688":
            o = self.alibaba[order_id]
            o["refundAmount"] += amount
            o["refundStatus"] = 1
            o["orderDetailInfoVOS"][0]["refund"] += amount
        else:
            o = self.taobao[order_id]
            sub = o["subOrderVOS"][0]
            refund_id = sub["refundId"] or str(110000000000 + uuid.uuid4().int % 10**11)
            sub["refundStatus"], sub["refundId"] = REFUND_SUCCESSFUL, refund_id
            case = self.refunds.setdefault(refund_id, _refund_case(o, sub, refund_id))
            case["refundOrderAggregate"]["refundOrder"]["refundFee"] += amount
        self._touch(order_id)
        return REFUND_PUSH

    # --- pushes --------------------------------------------------------------------------------
    def push(
        self, order_id: str, message_type: str, signed: bool = True, at_ms: int | None = None, shape: str | None = None
    ) -> tuple[dict[str, str], bytes]:
        """The callback the provider sends about `order_id`, in one of the documented body shapes."""
        platform = self.platform_of(order_id)
        shape = shape or ("summary" if platform == "1688" else "taobao")
        if (shape == "model" and platform != "1688") or (shape == "taobao" and platform != "taobao"):
            raise ValueError(f"a {platform} order is not pushed in the {shape} shape")
        now = at_ms if at_ms is not None else int(time.time() * 1000)
        if shape == "summary":
            body: Any = json.dumps(self._summary(order_id, message_type), ensure_ascii=False)
        elif shape == "model":
            body = self.model(order_id)
        else:
            body = self._taobao_body(order_id, message_type)
        envelope = {
            "messageType": SHAPE_PREFIX[shape] + message_type,
            "messageBody": body,
            "messagePlatform": PLATFORM_CODES[platform],
            "timestamp": str(now),
        }
        headers = {"Content-Type": "application/json"}
        if signed:
            stamp, nonce = str(int(time.time() * 1000)), uuid.uuid4().hex
            headers.update(
                {
                    "access-key": self.access_key,
                    "timestamp": stamp,
                    "nonce-str": nonce,
                    "user-id": self.user_id,
                    "signature": md5_signature(self.access_key, stamp, nonce, self.access_secret),
                }
            )
        return headers, json.dumps(envelope, ensure_ascii=False).encode()

    def _summary(self, order_id: str, message_type: str) -> dict[str, Any]:
        """The message access manual's order summary (doc-en-ka.xportcn.com/doc-7259275)."""
        o = self.order(order_id)
        if self.platform_of(order_id) == "1688":
            body: dict[str, Any] = {
                "orderId": o["tbOrderId"],
                "orderNo": o["orderNo"],
                "orderStatus": SUMMARY_STATUS.get(o["orderStatus"], "OTHER"),
                "payStatus": o["payStatus"],
                "totalAmount": o["totalAmount"],
                "shippingFee": o["shippingFee"],
                "productAmount": o["productAmount"],
                "refundAmount": o["refundAmount"],
                "refundStatus": None,
                "closeReason": None,
                "tbCreateTime": self.created[order_id].strftime("%Y-%m-%d %H:%M:%S"),
                "payTime": None,
            }
        else:
            body = {"purchaseId": str(o["purchaseId"]), "orderNo": o["orderNo"], "orderStatus": o["orderStatusDesc"]}
        if message_type == REFUND_PUSH:
            refund_id = next((s["refundId"] for s in o.get("subOrderVOS") or [] if s.get("refundId")), None)
            body = {"refundId": refund_id or f"TQ{uuid.uuid4().int % 10**14}", **body}
        return body

    def _taobao_body(self, order_id: str, message_type: str) -> dict[str, Any]:
        """The Taobao callback body (doc-en.pandapon.com/api-263477629)."""
        o = self.taobao[order_id]
        subs = []
        for s in o["subOrderVOS"]:
            r = s["subOrderResult"]
            subs.append(
                {
                    "purchase_order_outer_id": o["purchaseOrderOuterId"],
                    "purchase_order_line_outer_id": s["id"],
                    "product_amount": r["product_amount"],
                    "quantity": r["quantity"],
                    "detail_error_code": None,
                    "logistic_company_name": None,
                    "logistic_number": None,
                    "close_time_without_payment": None,
                    **({"refund_id": s["refundId"]} if message_type == REFUND_PUSH and s.get("refundId") else {}),
                }
            )
        price = {"purchaseCurrency": "CNY", "purchaseTotalFee": o["purchaseAmount"]}
        return {"salesOrderId": o["orderNo"], "subOrders": subs, "purchaseOrderPriceDTO": price}

    def redeliver(self, headers: Mapping[str, str], body: bytes) -> tuple[dict[str, str], bytes]:
        """A retry of a push: the manual's retry sends the same message again, headers and all."""
        return dict(headers), body


def _refund_case(o: Mapping[str, Any], sub: Mapping[str, Any], refund_id: str) -> dict[str, Any]:
    """The refund query's data (TaoBaoRefundOrderDetailDTO) for a new case on one sub-order."""
    result = sub["subOrderResult"]
    return {
        "distributorId": o["userId"],
        "currency": "CNY",
        "refundOrderAggregate": {
            "logistics": None,
            "refundOrder": {
                "refundFee": 0,
                "refundStatus": REFUND_SUCCESSFUL,
                "refundType": 1,
                "goodsStatus": 1,
                "refundId": refund_id,
            },
            "purchaseOrderLine": {
                "salesOrderId": o["orderNo"],
                "purchaseOrderId": o["purchaseId"],
                "purchaseOrderLineId": result["sub_purchase_order_id"],
                "quantity": result["quantity"],
                "productFee": result["purchase_amount"],
                "postFee": result["domestic_post_fee"],
            },
        },
    }


def _as_listed(record: Mapping[str, Any]) -> dict[str, Any]:
    """A purchase as the list serves it: each sub-order's result as a JSON string, as in 000."""
    listed = copy.deepcopy(dict(record))
    for sub in listed["subOrderVOS"]:
        sub["subOrderResult"] = json.dumps(sub["subOrderResult"], ensure_ascii=False)
    return listed


def _keep(record: Mapping[str, Any], query: Mapping[str, Any], keys: tuple[str, ...]) -> bool:
    """Whether a record passes the list's documented filters (those of `keys` the query sets)."""
    return all(str(record.get(k)) == str(query[k]) for k in keys if query.get(k) not in (None, ""))
