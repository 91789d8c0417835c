"""The Xportcn family's side of the sandbox: its list APIs, its signature check, and its pushes.

Orders are seeded from the examples in the provider's documentation (000, 001 and 002 in
shared/provider-docs), trimmed to the fields the receiver reads plus a few for realism.
"""
from __future__ import annotations

import copy
import hmac
import json
import time
import uuid
from typing import Any, Mapping

from receiver.providers import xportcn as spec

TAOBAO_SEED = [
    {
        "id": "30",
        "purchaseId": 200058578338,
        "orderNo": "1192794693444829414",
        "createTime": "2025-01-05 00:00:01",
        "payTime": None,
        "purchaseAmount": 2990,
        "subOrderVOS": [
            {
                "id": "1192794699010671091",
                "orderNo": "1192794693444829414",
                "subOrderStatus": "WAIT_BUYER_P",
                "taobaoRefundOrder": None,
                "subOrderResult": json.dumps(
                    {
                        "product_amount": "2990",
                        "quantity": 1,
                        "title": "1363 儿童冬季加绒保暖波浪连裤袜 NM52",
                        "purchase_currency": "CNY",
                        "purchase_amount": 2990,
                        "item_id": "4096193650344292",
                        "domestic_post_fee": 0,
                        "sub_purchase_order_id": "200058578339",
                        "sku_id": "23179458212196",
                        "status": "WAIT_BUYER_P",
                    },
                    ensure_ascii=False,
                ),
                "taobaoPurchaseId": "200058578338",
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
ALIBABA_SEED = [
    {
        "id": "1232742280964604571",
        "developId": "1110890638347337996",
        "flow": "general",
        "orderNo": "1232742280398373686",
        "tbOrderId": "2542285634920880794",
        "discount": 0,
        "productAmount": 22500,
        "shippingFee": 700,
        "totalAmount": 23200,
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
                "productId": "0TKFRHPSMug9XFLmzNmVXw",
                "name": "24S跨境欧美潮牌恶魔岛多口袋松紧休闲工装短裤男女沙滩五分裤",
                "quantity": 3,
                "unit": "件",
                "skuId": "5739035294244",
                "specId": "b1f7eb839828d3781406f0a1074de3c9",
                "itemAmount": 22500,
                "price": 7500,
                "refund": 0,
                "status": 1,
            }
        ],
    },
]
# How an order moves forward, one "status step" at a time.
ALIBABA_STEPS = (1, 2, 3, 4, 5)
TAOBAO_STEPS = (12, 0, 5, 10, 11)
STATUS_PUSH = {2: "ORDER_PAY_SUCCESS", 10: "ORDER_PAY_SUCCESS", 6: "ORDER_CANCEL", 4: "ORDER_CANCEL"}
PRICE_PUSH = {"1688": "1688_ORDER_BUYER_VIEW_ORDER_PRICE_MODIFY", "taobao": "ORDER_BUYER_VIEW_ORDER_PRICE_MODIFY"}
REFUND_PUSH = "ORDER_BUYER_VIEW_ORDER_BUYER_REFUND"
PLATFORM_CODES = {name: code for code, name in spec.PLATFORMS.items()}
ERROR_SIGNATURE = 401
ERROR_TIMESTAMP = 402


class XportcnProvider:
    """An Xportcn-family provider holding a few orders, for one account's credentials."""

    family = spec.NAME
    shapes = ("summary",)

    def __init__(self, access_key: str, access_secret: str, user_id: str, window: int = 600) -> None:
        self.access_key, self.access_secret, self.user_id, self.window = access_key, access_secret, user_id, window
        self.taobao: dict[str, dict[str, Any]] = {str(o["purchaseId"]): copy.deepcopy(o) for o in TAOBAO_SEED}
        self.alibaba: dict[str, dict[str, Any]] = {o["tbOrderId"]: copy.deepcopy(o) for o in ALIBABA_SEED}
        self.seen_nonces: dict[str, float] = {}

    # --- the API -------------------------------------------------------------------------------
    def error(self, code: int, msg: str) -> dict[str, Any]:
        return {"requestId": uuid.uuid4().hex, "code": code, "developId": "1110890638347337996", "msg": msg, "data": None}

    def _ok(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        answer = self.error(spec.SUCCESS_CODE, "成功")
        answer["data"] = {"total": len(records), "data": copy.deepcopy(records)}
        return answer

    def check_signature(self, headers: Mapping[str, str]) -> dict[str, Any] | None:
        """The provider's check of a request's headers; an error answer, or None when it passes."""
        h = {k.lower(): v for k, v in headers.items()}
        if any(not h.get(name) for name in (*spec.SIGNED_HEADERS, spec.USER_ID_HEADER)):
            return self.error(ERROR_SIGNATURE, "missing signature headers")
        expected = spec.sign(self.access_key, h["timestamp"], h["nonce-str"], self.access_secret)
        if h["access-key"] != self.access_key or not hmac.compare_digest(h["signature"], expected):
            return self.error(ERROR_SIGNATURE, "signature error")
        try:
            ts = spec.timestamp_ms(h["timestamp"])
        except ValueError:
            return self.error(ERROR_TIMESTAMP, "bad timestamp")
        if abs(time.time() * 1000 - ts) > self.window * 1000:
            return self.error(ERROR_TIMESTAMP, "timestamp expired")
        if h["nonce-str"] in self.seen_nonces:
            return self.error(ERROR_SIGNATURE, "nonce reused")
        self.seen_nonces[h["nonce-str"]] = time.time()
        return None

    def order_of_request(self, path: str, body: bytes) -> str | None:
        try:
            query = json.loads(body or b"{}")
        except ValueError:
            return None
        if not isinstance(query, dict):
            return None
        for key in ("tbOrderId", "purchaseId", "orderNo"):
            if query.get(key) is not None:
                return str(query[key])
        return None

    def handle(self, path: str, headers: Mapping[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        if (refused := self.check_signature(headers)) is not None:
            return 200, refused
        try:
            query = json.loads(body or b"{}")
        except ValueError:
            return 200, self.error(400, "body is not JSON")
        if path in {p["alibaba_order_page"] for p in spec.PORTALS.values()}:
            records = [o for o in self.alibaba.values() if _keep(o, query, ("tbOrderId", "orderStatus"))]
        elif path == spec.TAOBAO_PURCHASE_PAGE:
            records = [o for o in self.taobao.values() if _keep(o, query, ("purchaseId", "orderNo", "status"))]
        else:
            return 404, self.error(404, f"no such API {path}")
        size = int(query.get("pageSize") or 20)
        start = (int(query.get("pageNum") or 1) - 1) * size
        return 200, self._ok(records[start : start + size])

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

    def add_orders(self, count: int, platform: str = "1688") -> list[str]:
        """Clone the seed order `count` times under new ids, for scenarios with many orders."""
        ids = []
        for _ in range(count):
            n = uuid.uuid4().int % 10**18
            if platform == "1688":
                o = copy.deepcopy(ALIBABA_SEED[0])
                o["tbOrderId"], o["orderNo"], o["id"] = f"3{n:018d}", f"PO{n:018d}", str(n)
                self.alibaba[o["tbOrderId"]] = o
                ids.append(o["tbOrderId"])
            else:
                o = copy.deepcopy(TAOBAO_SEED[0])
                o["purchaseId"], o["orderNo"] = 200000000000 + n % 10**11, f"1{n:018d}"
                self.taobao[str(o["purchaseId"])] = o
                ids.append(str(o["purchaseId"]))
        return ids

    def order(self, order_id: str) -> dict[str, Any]:
        """The provider's record of one order (a copy)."""
        return copy.deepcopy(self.alibaba.get(order_id) or self.taobao[order_id])

    def correct_price(self, order_id: str, delta: int = -100) -> str:
        """The seller corrects the price by `delta` fen; returns the push's message type."""
        if self.platform_of(order_id) == "1688":
            o = self.alibaba[order_id]
            o["discount"] -= delta
            o["totalAmount"] += delta
        else:
            self.taobao[order_id]["purchaseAmount"] += delta
        return PRICE_PUSH[self.platform_of(order_id)]

    def step_status(self, order_id: str) -> str:
        """Move the order one step along its platform's statuses; returns the push's message type."""
        if self.platform_of(order_id) == "1688":
            o, key, steps = self.alibaba[order_id], "orderStatus", ALIBABA_STEPS
        else:
            o, key, steps = self.taobao[order_id], "status", TAOBAO_STEPS
        i = steps.index(o[key]) if o[key] in steps else len(steps) - 1
        o[key] = steps[min(i + 1, len(steps) - 1)]
        if self.platform_of(order_id) == "1688":
            for line in o["orderDetailInfoVOS"]:
                line["status"] = o[key]
        return STATUS_PUSH.get(o[key], spec.INFERRED_STATUS_TYPES[0])

    def set_status(self, order_id: str, code: int) -> str:
        """Set the order's raw status code; returns the push's message type."""
        key = "orderStatus" if self.platform_of(order_id) == "1688" else "status"
        (self.alibaba.get(order_id) or self.taobao[order_id])[key] = code
        return STATUS_PUSH.get(code, spec.INFERRED_STATUS_TYPES[0])

    def refund(self, order_id: str, amount: int = 500) -> str:
        """The buyer gets `amount` fen back on the first line; returns the push's message type."""
        if self.platform_of(order_id) == "1688":
            o = self.alibaba[order_id]
            o["refundAmount"] += amount
            o["refundStatus"] = 1
            o["orderDetailInfoVOS"][0]["refund"] += amount
        else:
            sub = self.taobao[order_id]["subOrderVOS"][0]
            sub["refundStatus"] = spec.TAOBAO_REFUNDED
            sub["refundId"] = uuid.uuid4().hex[:16]
            fee = (sub.get("taobaoRefundOrder") or {}).get(spec.INFERRED_TAOBAO_REFUND_FEE_KEYS[0], 0)
            sub["taobaoRefundOrder"] = {spec.INFERRED_TAOBAO_REFUND_FEE_KEYS[0]: fee + amount}
        return REFUND_PUSH

    # --- pushes --------------------------------------------------------------------------------
    def push(
        self, order_id: str, message_type: str, signed: bool = True, at_ms: int | None = None, shape: str | None = None
    ) -> tuple[dict[str, str], bytes]:
        """The callback the provider sends about `order_id`: (headers, body)."""
        platform = self.platform_of(order_id)
        o = self.order(order_id)
        if platform == "1688":
            body: dict[str, Any] = {
                "orderId": o["tbOrderId"],
                "orderNo": o["orderNo"],
                "orderStatus": o["orderStatus"],
                "totalAmount": o["totalAmount"],
                "shippingFee": o["shippingFee"],
                "productAmount": o["productAmount"],
                "refundAmount": o["refundAmount"],
            }
        else:
            body = {"purchaseId": str(o["purchaseId"]), "orderNo": o["orderNo"], "status": o["status"]}
        if message_type == REFUND_PUSH:
            body["refundId"] = uuid.uuid4().hex[:16]
        now = at_ms if at_ms is not None else int(time.time() * 1000)
        envelope = {
            "messageType": message_type,
            "messageBody": json.dumps(body, ensure_ascii=False),
            "messagePlatform": PLATFORM_CODES[platform],
            "timestamp": str(now),
        }
        headers = {"Content-Type": "application/json"}
        if signed:
            headers.update(spec.signed_headers(self.access_key, self.access_secret, self.user_id))
        return headers, json.dumps(envelope, ensure_ascii=False).encode()

    def redeliver(self, headers: Mapping[str, str], body: bytes) -> tuple[dict[str, str], bytes]:
        """A retry of a push: the same body, freshly signed (a new nonce and timestamp)."""
        fresh = {"Content-Type": "application/json"}
        if any(k.lower() == "signature" for k in headers):
            fresh.update(spec.signed_headers(self.access_key, self.access_secret, self.user_id))
        return fresh, body


def _keep(record: Mapping[str, Any], query: Mapping[str, Any], keys: tuple[str, ...]) -> bool:
    """Whether a record passes the list API's filters (those of `keys` the query sets)."""
    return all(str(record.get(k)) == str(query[k]) for k in keys if query.get(k) not in (None, ""))
