"""The DajiSaaS family's side of the sandbox: its signed API (buyerView and the buyer order list),
and its pushes, 1688 trade messages and Taobao/Tmall messages.

It plays DajiSaaS as shared/provider-docs/PUBLISHED-DOCS.md section 2 (outside this repository)
describes it, on its own: it checks `sign` and makes `_dj_signature` with code of its own, never
with the receiver's client, so that a mistake in the client shows up as a refused call instead of
being mirrored. It ignores list filters the docs do not list (an `orderId` on the order list), as a real server would.

The first order is seeded from the order list example in the provider's documentation (004 in
shared/provider-docs, outside this repository), rewound to before payment so that it can walk through every status; the
second from the buyerView example (wiki.dajisaas.com/api-164891585), with a line that has no id.
Amounts are yuan, and ids go out both as strings and as JSON numbers rounded the way a double
rounds them, as in the docs' sample.
"""
from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import itertools
import json
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

FAMILY = "dajisaas"
PLATFORM = "1688"
BUYER_VIEW = "/alibaba/trade/get/buyerView"
ORDER_LIST = "/alibaba/trade/getBuyerOrderList"
OK = 200
FORM = "application/x-www-form-urlencoded"
CHINA = timezone(timedelta(hours=8))

SEED: list[dict[str, Any]] = [
    {
        "baseInfo": {
            "id": 29080593337363456,
            "idOfStr": "29080593337363456",
            "businessType": "cn",
            "buyerID": "b2b-2217533334e9c00",
            "sellerID": "b2b-292931333434e",
            "buyerLoginId": "tb640552016",
            "sellerLoginId": "kyocraft",
            "createTime": "2025-09-02T09:56:37.000+00:00",
            "modifyTime": "2025-09-02T09:56:37.000+00:00",
            "payTime": None,
            "completeTime": None,
            "status": "waitbuyerpay",
            "currency": None,
            "sumProductPayment": 47.8,
            "shippingFee": 4.5,
            "discount": 0,
            "totalAmount": 47.3,
            "refund": 0,
            "refundPayment": 0,
            "refundStatus": None,
            "tradeType": "50060",
            "closeReason": None,
            "outOrderId": None,
        },
        "productItems": [
            {
                "itemAmount": 42.8,
                "name": "现货打孔机成人耳环项链手链饰品挂卡打孔器首饰收纳卡片打孔机",
                "price": 23.9,
                "productID": 800609753716,
                "quantity": 2,
                "refund": 0,
                "skuID": None,
                "status": "waitbuyerpay",
                "subItemID": 290803333337363456,
                "subItemIDString": "290803333337363456",
                "unit": "个",
                "entryDiscount": 0,
                "quantityFactor": 1,
                "refundStatus": None,
                "productCargoNumber": "LP-10C-058",
            }
        ],
        "tradeTerms": [
            {"payStatus": "1", "payTime": None, "payWay": "13", "phasAmount": 47.3, "phase": 610423338363456},
        ],
        "nativeLogistics": {
            "address": "广东省 广州市 白云区",
            "areaCode": "440111",
            "contactPerson": "XXX",
            "zip": "510000",
            "logisticsItems": None,
        },
    },
    {
        "baseInfo": {
            "id": 2257164624870311973,
            "idOfStr": "2257164624870311973",
            "businessType": "cn",
            "buyerID": "b2b-2217533334e9c00",
            "sellerID": "b2b-22092284641cf5",
            "createTime": "2025-09-10T02:11:05.000+00:00",
            "modifyTime": "2025-09-10T02:11:05.000+00:00",
            "status": "waitbuyerpay",
            "sumProductPayment": 10.11,
            "shippingFee": 1.15,
            "discount": 0,
            "totalAmount": 11.26,
            "refund": 0,
            "refundPayment": 0,
            "refundStatus": None,
        },
        "productItems": [
            {
                "itemAmount": 8.96,  # 5 x 1.8, less a 0.04 entry discount, as in the docs' sample
                "name": "收纳盒",
                "price": 1.8,
                "productID": 710354262123,
                "quantity": 5,
                "refund": 0,
                "skuID": 4955816392133,
                "status": "waitbuyerpay",
                "subItemID": 2257164624870311974,
                "subItemIDString": "2257164624870311974",
                "entryDiscount": 4,
            },
            {
                # Neither subItemID nor subItemIDString: the receiver must still take the order.
                "itemAmount": 1.15,
                "name": "挂卡",
                "price": 0.23,
                "productID": 710354262999,
                "quantity": 5,
                "refund": 0,
                "skuID": None,
                "status": "waitbuyerpay",
            },
        ],
        "tradeTerms": [{"payStatus": "1", "payTime": None, "payWay": "13", "phasAmount": 11.26, "phase": 2257164624870311}],
    },
]
# How an order moves forward, one "status step" at a time, and the message each status causes.
STEPS = ("waitbuyerpay", "waitsellersend", "waitbuyerreceive", "confirm_goods", "success")
STATUS_PUSH = {
    "waitbuyerpay": "ORDER_BUYER_VIEW_BUYER_MAKE",
    "waitsellersend": "ORDER_BUYER_VIEW_ORDER_PAY",
    "waitbuyerreceive": "ORDER_BUYER_VIEW_ANNOUNCE_SENDGOODS",
    "confirm_goods": "ORDER_BUYER_VIEW_ORDER_COMFIRM_RECEIVEGOODS",
    "success": "ORDER_BUYER_VIEW_ORDER_SUCCESS",
    "cancel": "ORDER_BUYER_VIEW_ORDER_BUYER_CLOSE",
    "terminated": "ORDER_BUYER_VIEW_ORDER_SELLER_CLOSE",
}
PRICE_PUSH = "ORDER_BUYER_VIEW_ORDER_PRICE_MODIFY"
REFUND_PUSH = "ORDER_BUYER_VIEW_ORDER_BUYER_REFUND_IN_SALES"
# Taobao/Tmall message types (wiki-en.dajisaas.com/doc-4966230): 3 status update, 8 price change.
TAOBAO_STATUS, TAOBAO_PRICE = 3, 8
TAOBAO_STATUS_OF = {"waitbuyerpay": "WAIT_BUYER_P", "waitsellersend": "WAIT_SELLER_SEND_GOODS",
                    "waitbuyerreceive": "WAIT_BUYER_CONFIRM_GOODS", "cancel": "TRADE_CLOSED"}
ERROR_KEYS = 401
ERROR_SIGN = 402
ERROR_PARAMS = 400
PAGE_SIZE_CAP = 20


# --- the sandbox's own signing, written from the docs, not taken from the receiver ---------------
def sign_of(body: Mapping[str, Any], secret: str) -> str:
    """What DajiSaaS expects in `sign`: MD5 of sorted k=v&...&secret=..., upper-case hex, nulls out."""
    text = ""
    for key in sorted(body):
        value = body[key]
        if key in ("sign", "appSecret") or value is None or isinstance(value, (dict, list)):
            continue
        if isinstance(value, bool):
            value = str(value).lower()
        text += f"{key}={value}&"
    return hashlib.md5(f"{text}secret={secret}".encode()).hexdigest().upper()


def _hmac_sha1(secret: str, text: str) -> bytes:
    return hmac.new(secret.encode("utf-8"), text.encode("utf-8"), "sha1").digest()


# How the sandbox makes `_dj_signature`: one of the candidates, as a real account would use one.
PUSH_SIGNERS: dict[str, Callable[[str, str], str]] = {
    "value-hex-upper": lambda key, msg: _hmac_sha1(key, msg).hex().upper(),
    "value-hex-lower": lambda key, msg: _hmac_sha1(key, msg).hex(),
    "value-base64": lambda key, msg: base64.b64encode(_hmac_sha1(key, msg)).decode(),
    "name-value-hex-upper": lambda key, msg: _hmac_sha1(key, "message" + msg).hex().upper(),
    "name-value-hex-lower": lambda key, msg: _hmac_sha1(key, "message" + msg).hex(),
    "name-value-base64": lambda key, msg: base64.b64encode(_hmac_sha1(key, "message" + msg)).decode(),
}


def as_double(number: int) -> int:
    """An id as a JSON number that went through a double, written out as JavaScript would."""
    return int(Decimal(repr(float(number))))


def _compact_time(text: Any) -> datetime | None:
    """The list's time filter, yyyyMMddHHmmssSSS+0800; None when absent or unreadable."""
    if not isinstance(text, str) or len(text) != 22:
        return None
    try:
        return datetime.strptime(text[:14] + text[17:], "%Y%m%d%H%M%S%z") + timedelta(milliseconds=int(text[14:17]))
    except ValueError:
        return None


class DajisaasProvider:
    """A DajiSaaS account holding a few 1688 orders, for one app's keys."""

    family = FAMILY
    shapes: tuple[str, ...] = ("trade", "taobao")

    def __init__(
        self, app_key: str, app_secret: str, page_size_cap: int = PAGE_SIZE_CAP, signature_scheme: str = "name-value-hex-upper"
    ) -> None:
        self.app_key, self.app_secret = app_key, app_secret
        self.page_size_cap = page_size_cap
        self.signature_scheme = signature_scheme
        self.orders: dict[str, dict[str, Any]] = {}
        # The account's orders were created just now, so that a reconciliation window finds them.
        created = (datetime.now(timezone.utc) - timedelta(minutes=1)).isoformat(timespec="milliseconds")
        for seed in SEED:
            order = copy.deepcopy(seed)
            order["baseInfo"]["createTime"] = order["baseInfo"]["modifyTime"] = created
            self.orders[order["baseInfo"]["idOfStr"]] = order
        self.msg_ids = itertools.count(int(time.time() * 1000) * 1000)
        self.requests: list[dict[str, Any]] = []  # the bodies of the API calls, as received

    @classmethod
    def for_source(cls, credentials: Mapping[str, Any]) -> DajisaasProvider:
        """The provider of an app with a source's credentials; it signs pushes as the source pins ("any": as usual)."""
        scheme = credentials.get("signature_scheme")
        pinned = {"signature_scheme": scheme} if scheme and scheme != "any" else {}
        return cls(credentials["app_key"], credentials["app_secret"], **pinned)

    # --- the API -------------------------------------------------------------------------------
    def error(self, code: int, msg: str) -> dict[str, Any]:
        return {"code": code, "message": msg, "data": None, "timestamp": int(time.time() * 1000),
                "traceId": uuid.uuid4().hex[:11]}

    def _answer(self, data: Any) -> dict[str, Any]:
        answer = self.error(OK, "操作成功")
        answer["data"] = data
        return answer

    def order_of_request(self, path: str, body: bytes) -> str | None:
        if path != BUYER_VIEW:
            return None  # the list takes no order id, whatever a client sends
        try:
            query = json.loads(body or b"{}")
        except ValueError:
            return None
        if not isinstance(query, dict) or query.get("orderId") in (None, ""):
            return None
        return str(query["orderId"])

    def _refusal(self, query: Mapping[str, Any]) -> dict[str, Any] | None:
        """The error a request's credentials earn, or None: `sign`, or appSecret for debugging."""
        if not hmac.compare_digest(str(query.get("appKey", "")).encode(), self.app_key.encode()):
            return self.error(ERROR_KEYS, "appKey错误")
        given = query.get("sign")
        if given is not None:
            if not hmac.compare_digest(str(given).encode(), sign_of(query, self.app_secret).encode()):
                return self.error(ERROR_SIGN, "签名错误 (sign does not verify)")
            return None
        if query.get("appSecret") is not None:  # the docs' debugging mode
            if hmac.compare_digest(str(query["appSecret"]).encode(), self.app_secret.encode()):
                return None
            return self.error(ERROR_KEYS, "appSecret错误")
        return self.error(ERROR_SIGN, "缺少签名 (no sign)")

    def handle(self, path: str, headers: Mapping[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        try:
            query = json.loads(body or b"{}")
        except ValueError:
            return 200, self.error(ERROR_PARAMS, "body is not JSON")
        if not isinstance(query, dict):
            return 200, self.error(ERROR_PARAMS, "body is not a JSON object")
        self.requests.append(query)
        refused = self._refusal(query)
        if refused is not None:
            return 200, refused
        if path == BUYER_VIEW:
            return 200, self._buyer_view(query)
        if path == ORDER_LIST:
            return 200, self._order_list(query)
        return 404, self.error(404, f"no such API {path}")

    def _buyer_view(self, query: Mapping[str, Any]) -> dict[str, Any]:
        if query.get("webSite") != PLATFORM:
            return self.error(ERROR_PARAMS, "webSite must be 1688")
        order = self.orders.get(str(query.get("orderId")))
        if order is None:
            return self.error(ERROR_PARAMS, "订单不存在 (no such order)")
        return self._answer(self.render(order))

    def _order_list(self, query: Mapping[str, Any]) -> dict[str, Any]:
        start, end = _compact_time(query.get("createStartTime")), _compact_time(query.get("createEndTime"))
        status = query.get("orderStatus")
        records = [
            o for o in self.orders.values()
            if (not status or o["baseInfo"]["status"] == status)
            and (start is None or datetime.fromisoformat(o["baseInfo"]["createTime"]) >= start)
            and (end is None or datetime.fromisoformat(o["baseInfo"]["createTime"]) <= end)
        ]
        try:
            size = min(max(int(query.get("pageSize") or 20), 1), self.page_size_cap)
            page = max(int(query.get("page") or 1), 1)
        except (TypeError, ValueError):
            return self.error(ERROR_PARAMS, "page and pageSize must be numbers")
        chosen = records[(page - 1) * size : page * size]
        return self._answer({"result": [self.render(o) for o in chosen], "errorCode": None, "errorMessage": None,
                             "totalRecord": len(records)})

    def render(self, order: Mapping[str, Any]) -> dict[str, Any]:
        """An order as the API writes it: numeric ids rounded through a double, strings exact."""
        out = copy.deepcopy(dict(order))
        out["baseInfo"]["id"] = as_double(int(out["baseInfo"]["idOfStr"]))
        for item in out["productItems"]:
            if item.get("subItemID") is not None:
                item["subItemID"] = as_double(int(item["subItemID"]))
        return out

    # --- orders and what happens to them ------------------------------------------------------
    def order_ids(self) -> list[str]:
        return list(self.orders)

    def platform_of(self, order_id: str) -> str:
        """Which platform holds `order_id`: DajiSaaS's trade messages are all 1688's."""
        if order_id not in self.orders:
            raise KeyError(f"no order {order_id}")
        return PLATFORM

    def add_orders(self, count: int, platform: str = PLATFORM) -> list[str]:
        """Clone the first seed order `count` times under new ids, for scenarios with many orders."""
        if platform != PLATFORM:
            raise ValueError(f"DajiSaaS pushes only {PLATFORM} orders")
        ids = []
        first = self.orders[SEED[0]["baseInfo"]["idOfStr"]] if SEED[0]["baseInfo"]["idOfStr"] in self.orders else SEED[0]
        for _ in range(count):
            n = uuid.uuid4().int % 10**17
            o = copy.deepcopy(first)
            o["baseInfo"]["id"], o["baseInfo"]["idOfStr"] = 3 * 10**17 + n, str(3 * 10**17 + n)
            for i, item in enumerate(o["productItems"]):
                item["subItemID"] = 4 * 10**17 + n * 10 + i
                item["subItemIDString"] = str(item["subItemID"])
            self.orders[o["baseInfo"]["idOfStr"]] = o
            ids.append(o["baseInfo"]["idOfStr"])
        return ids

    def order(self, order_id: str) -> dict[str, Any]:
        """The provider's record of one order (a copy)."""
        return copy.deepcopy(self.orders[order_id])

    def _touch(self, order: dict[str, Any]) -> None:
        order["baseInfo"]["modifyTime"] = datetime.now(timezone.utc).isoformat(timespec="milliseconds")

    def correct_price(self, order_id: str, delta: int = -100) -> str:
        """The seller corrects the price by `delta` fen on the first line; returns the push's message type."""
        o = self.orders[order_id]
        base, item = o["baseInfo"], o["productItems"][0]
        # 1688 keeps totalAmount = sum of itemAmount + shippingFee; discount is in fen.
        base["totalAmount"] = _plus_fen(base["totalAmount"], delta)
        item["itemAmount"] = _plus_fen(item["itemAmount"], delta)
        base["discount"] -= delta
        o["tradeTerms"][0]["phasAmount"] = base["totalAmount"]
        self._touch(o)
        return PRICE_PUSH

    def step_status(self, order_id: str) -> str:
        """Move the order one step along 1688's statuses; returns the push's message type."""
        status = self.orders[order_id]["baseInfo"]["status"]
        i = STEPS.index(status) if status in STEPS else len(STEPS) - 1
        return self.set_status(order_id, STEPS[min(i + 1, len(STEPS) - 1)])

    def set_status(self, order_id: str, status: str) -> str:
        """Set the order's raw 1688 status; returns the push's message type."""
        o = self.orders[order_id]
        o["baseInfo"]["status"] = status
        for item in o["productItems"]:
            item["status"] = status
        if status == "waitsellersend":
            now = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
            o["baseInfo"]["payTime"] = o["tradeTerms"][0]["payTime"] = now
            o["tradeTerms"][0]["payStatus"] = "2"
        self._touch(o)
        # Any trade message makes the receiver re-fetch: an unlisted status still gets one.
        return STATUS_PUSH.get(status, "ORDER_BUYER_VIEW_MODIFY_MEMO")

    def refund(self, order_id: str, amount: int = 500) -> str:
        """The buyer gets `amount` fen back on the first line, in sale; returns the push's message type."""
        o = self.orders[order_id]
        base, item = o["baseInfo"], o["productItems"][0]
        base["refund"] = _plus_fen(base["refund"], amount)
        item["refund"] = _plus_fen(item["refund"], amount)
        base["refundStatus"], item["refundStatus"] = "refundsuccess", "REFUND_SUCCESS"
        self._touch(o)
        return REFUND_PUSH

    # --- pushes --------------------------------------------------------------------------------
    def _message(self, order_id: str, message_type: str, msg_id: int | None = None) -> dict[str, Any]:
        """The 1688 message DajiSaaS forwards about `order_id`."""
        o = self.orders[order_id]
        base = o["baseInfo"]
        now = datetime.now(timezone.utc)
        sent = now.astimezone(CHINA).strftime("%Y-%m-%d %H:%M:%S")
        if message_type.startswith("LOGISTICS_"):
            data: dict[str, Any] = {
                "OrderLogisticsTracingModel": {
                    "logisticsId": f"BX{base['idOfStr'][-12:]}",
                    "cpCode": "YTO",
                    "mailNo": f"YT{base['idOfStr'][-13:]}",
                    "statusChanged": "CONSIGN",
                    "changeTime": sent,
                    "orderLogsItems": [{"orderId": int(base["idOfStr"]), "orderEntryId": i.get("subItemID")}
                                       for i in o["productItems"]],
                }
            }
        elif message_type == "ORDER_BATCH_PAY":
            data = {"batchPay": [{"orderId": int(base["idOfStr"]), "status": "success"}], "msgSendTime": sent}
        else:
            data = {
                "orderId": int(base["idOfStr"]),  # a Java Long, written exactly
                "currentStatus": base["status"],
                "msgSendTime": sent,
                "buyerMemberId": base["buyerID"],
                "sellerMemberId": base["sellerID"],
            }
            if message_type in (REFUND_PUSH, "ORDER_BUYER_VIEW_ORDER_REFUND_AFTER_SALES"):
                data.update(currentStatus=base.get("refundStatus") or "waitsellteragree", refundAction="SELLER_AGREE_REFUND",
                            operator="seller", refundId=f"TQ{uuid.uuid4().int % 10**16}")
        return {
            "msgId": msg_id if msg_id is not None else next(self.msg_ids),
            "gmtBorn": int(now.timestamp() * 1000),
            "type": message_type,
            "userInfo": base["buyerID"],
            "data": data,
        }

    def taobao_purchase_id(self, order_id: str) -> int:
        """The Taobao Global Distribution purchase id this account's Taobao messages use for an order."""
        return 200000000000 + int(order_id) % 10**10

    def _taobao_message(self, order_id: str, message_type: str) -> dict[str, Any]:
        """A Taobao/Tmall message as DajiSaaS documents it: 8 for a price change, 3 for the rest."""
        o = self.orders[order_id]
        base = o["baseInfo"]
        now = datetime.now(timezone.utc)
        purchase_id = self.taobao_purchase_id(order_id)
        outer = f"FY{now:%Y%m%d}{order_id[-3:]}"
        if message_type == PRICE_PUSH:
            kind = TAOBAO_PRICE
            fee = str(int(Decimal(str(base["totalAmount"])) * 100))
            data: dict[str, Any] = {
                "features": "", "salesOrderId": f"500000-{outer}", "salesSellerId": "2100000927014",
                "purchaseMarket": "TAOBAO", "purchaseOrderId": purchase_id,
                "purchaseOrderPriceDTO": {"purchaseCurrency": "CNY", "purchaseTotalFee": fee,
                                          "purchaseProductFee": fee, "purchaseShippingFee": "0"},
                "purchaseOrderLinePriceChangeMessageDTOList": [],
            }
        else:
            kind = TAOBAO_STATUS
            status = TAOBAO_STATUS_OF.get(base["status"], "WAIT_BUYER_CONFIRM_GOODS")
            data = {
                "business_time": int(now.timestamp() * 1000), "outer_purchase_id": outer, "purchase_id": purchase_id,
                "seller_id": "2100000927014", "status": status,
                "sku_list": [{"item_id": i["productID"], "sku_id": i.get("skuID"), "order_line_no": n, "status": status,
                              "logistic_company_name": None, "logistic_number": None}
                             for n, i in enumerate(o["productItems"], 1)],
            }
        return {"seller_id": "2100000927014", "message_type": kind, "data": data,
                "timestamp": int(now.timestamp()), "site": "taobao_hk"}

    def push(
        self, order_id: str, message_type: str, signed: bool = True, msg_id: int | None = None, shape: str | None = None
    ) -> tuple[dict[str, str], bytes]:
        """The callback DajiSaaS sends about `order_id`: (headers, form body); a wrong signature unless `signed`.

        `shape` "trade" (the default) is the 1688 trade message, "taobao" a Taobao/Tmall message.
        """
        if shape not in (None, *self.shapes):
            raise ValueError(f"shape must be one of {', '.join(self.shapes)}")
        if shape == "taobao":
            message = self._taobao_message(order_id, message_type)
        else:
            message = self._message(order_id, message_type, msg_id)
        text = json.dumps(message, ensure_ascii=False, separators=(",", ":"))
        key = self.app_secret if signed else "not-" + self.app_secret
        body = urlencode({"message": text, "_dj_signature": PUSH_SIGNERS[self.signature_scheme](key, text)})
        return {"Content-Type": f"{FORM}; charset=UTF-8"}, body.encode()

    def redeliver(self, headers: Mapping[str, str], body: bytes) -> tuple[dict[str, str], bytes]:
        """1688 re-sends a message as it was: same msgId, same signature."""
        return {"Content-Type": f"{FORM}; charset=UTF-8"}, body


def _plus_fen(yuan: float, fen: int) -> float:
    """A yuan amount plus some fen, computed exactly and written back as JSON writes yuan."""
    return float(Decimal(str(yuan)) + Decimal(fen) / 100)
