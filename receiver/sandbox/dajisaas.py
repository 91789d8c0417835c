"""The DajiSaaS family's side of the sandbox: its buyer order list, its key check, and its pushes.

The order is seeded from the example in the provider's documentation (004 in shared/provider-docs),
rewound to before payment so that it can walk through every status, and trimmed to the fields the
receiver reads plus a few for realism. Amounts are yuan, as DajiSaaS answers them.
"""
from __future__ import annotations

import copy
import hmac
import itertools
import json
import time
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Mapping
from urllib.parse import urlencode

from receiver.providers import dajisaas as spec

SEED = [
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
ERROR_KEYS = 401


class DajisaasProvider:
    """A DajiSaaS account holding a few 1688 orders, for one app's keys."""

    family = spec.NAME
    shapes = ("trade",)

    def __init__(self, app_key: str, app_secret: str) -> None:
        self.app_key, self.app_secret = app_key, app_secret
        self.orders: dict[str, dict[str, Any]] = {str(o["baseInfo"]["id"]): copy.deepcopy(o) for o in SEED}
        self.msg_ids = itertools.count(int(time.time() * 1000) * 1000)

    # --- the API -------------------------------------------------------------------------------
    def error(self, code: int, msg: str) -> dict[str, Any]:
        return {"code": code, "message": msg, "data": None, "timestamp": int(time.time() * 1000),
                "traceId": uuid.uuid4().hex[:11]}

    def _ok(self, records: list[dict[str, Any]], total: int) -> dict[str, Any]:
        answer = self.error(spec.SUCCESS_CODE, "操作成功")
        answer["data"] = {"result": copy.deepcopy(records), "errorCode": None, "errorMessage": None, "totalRecord": total}
        answer["cost"] = 0
        return answer

    def order_of_request(self, path: str, body: bytes) -> str | None:
        try:
            query = json.loads(body or b"{}")
        except ValueError:
            return None
        if not isinstance(query, dict) or query.get(spec.INFERRED_ORDER_FILTER) in (None, ""):
            return None
        return str(query[spec.INFERRED_ORDER_FILTER])

    def handle(self, path: str, headers: Mapping[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        try:
            query = json.loads(body or b"{}")
        except ValueError:
            return 200, self.error(400, "body is not JSON")
        if not isinstance(query, dict):
            return 200, self.error(400, "body is not a JSON object")
        key_ok = hmac.compare_digest(str(query.get("appKey", "")).encode(), self.app_key.encode())
        secret_ok = hmac.compare_digest(str(query.get("appSecret", "")).encode(), self.app_secret.encode())
        if not (key_ok and secret_ok):
            return 200, self.error(ERROR_KEYS, "appKey或appSecret错误")
        if path != spec.ORDER_LIST_PATH:
            return 404, self.error(404, f"no such API {path}")
        wanted = query.get(spec.INFERRED_ORDER_FILTER)
        status = query.get("orderStatus")
        records = [
            o for oid, o in self.orders.items()
            if (wanted in (None, "") or oid == str(wanted)) and (not status or o["baseInfo"]["status"] == status)
        ]
        size = int(query.get("pageSize") or 20)
        start = (int(query.get("page") or 1) - 1) * size
        return 200, self._ok(records[start : start + size], len(records))

    # --- orders and what happens to them ------------------------------------------------------
    def order_ids(self) -> list[str]:
        return list(self.orders)

    def platform_of(self, order_id: str) -> str:
        """Which platform holds `order_id`: DajiSaaS's trade messages are all 1688's."""
        if order_id not in self.orders:
            raise KeyError(f"no order {order_id}")
        return spec.PLATFORM

    def add_orders(self, count: int, platform: str = spec.PLATFORM) -> list[str]:
        """Clone the seed order `count` times under new ids, for scenarios with many orders."""
        if platform != spec.PLATFORM:
            raise ValueError(f"DajiSaaS pushes only {spec.PLATFORM} orders")
        ids = []
        for _ in range(count):
            n = uuid.uuid4().int % 10**17
            o = copy.deepcopy(SEED[0])
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
        sent = now.astimezone(timezone(timedelta(hours=8))).strftime("%Y-%m-%d %H:%M:%S")
        if message_type.startswith("LOGISTICS_"):
            data: dict[str, Any] = {
                "OrderLogisticsTracingModel": {
                    "logisticsId": f"BX{base['idOfStr'][-12:]}",
                    "cpCode": "YTO",
                    "mailNo": f"YT{base['idOfStr'][-13:]}",
                    "statusChanged": "CONSIGN",
                    "changeTime": sent,
                    "orderLogsItems": [{"orderId": base["id"], "orderEntryId": i["subItemID"]} for i in o["productItems"]],
                }
            }
        else:
            data = {
                "orderId": base["id"],
                "currentStatus": base["status"],
                "msgSendTime": sent,
                "buyerMemberId": base["buyerID"],
                "sellerMemberId": base["sellerID"],
            }
            if message_type == REFUND_PUSH:
                data.update(currentStatus=base["refundStatus"], refundAction="SELLER_AGREE_REFUND",
                            operator="seller", refundId=f"TQ{uuid.uuid4().int % 10**16}")
        return {
            "msgId": msg_id if msg_id is not None else next(self.msg_ids),
            "gmtBorn": int(now.timestamp() * 1000),
            "type": message_type,
            "userInfo": base["buyerID"],
            "data": data,
        }

    def push(
        self, order_id: str, message_type: str, signed: bool = True, msg_id: int | None = None, shape: str | None = None
    ) -> tuple[dict[str, str], bytes]:
        """The callback DajiSaaS sends about `order_id`: (headers, form body); a wrong signature unless `signed`."""
        text = json.dumps(self._message(order_id, message_type, msg_id), ensure_ascii=False, separators=(",", ":"))
        secret = self.app_secret if signed else "not-" + self.app_secret
        body = urlencode({spec.MESSAGE_FIELD: text, spec.SIGNATURE_FIELD: spec.sign(secret, text)})
        return {"Content-Type": f"{spec.FORM_CONTENT_TYPE}; charset=UTF-8"}, body.encode()

    def redeliver(self, headers: Mapping[str, str], body: bytes) -> tuple[dict[str, str], bytes]:
        """1688 re-sends a message as it was: same msgId, same signature."""
        return {"Content-Type": f"{spec.FORM_CONTENT_TYPE}; charset=UTF-8"}, body


def _plus_fen(yuan: float, fen: int) -> float:
    """A yuan amount plus some fen, computed exactly and written back as JSON writes yuan."""
    return float(Decimal(str(yuan)) + Decimal(fen) / 100)
