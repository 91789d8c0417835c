"""A sentinel:// broker URL: readiness and publishing go to the master Sentinel names."""
from __future__ import annotations

import shutil
import subprocess

import pytest
import redis

from tests.conftest import TOKENS, free_port, wait_for
from tests.workers.test_refetch import ALIBABA, events_when

MASTER = "receiver-test-master"


@pytest.fixture
def sentinel(tmp_path, broker_url):  # type: ignore[no-untyped-def]
    """A real Redis Sentinel watching the suite's Redis as MASTER."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    target = redis.Redis.from_url(broker_url).connection_pool.connection_kwargs
    port = free_port()
    conf = tmp_path / "sentinel.conf"
    conf.write_text(f"port {port}\nbind 127.0.0.1\ndir {tmp_path}\n"
                    f"sentinel monitor {MASTER} {target.get('host', '127.0.0.1')} {target.get('port', 6379)} 1\n"
                    f"sentinel down-after-milliseconds {MASTER} 60000\n")
    proc = subprocess.Popen(["redis-server", str(conf), "--sentinel"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client = redis.Redis(port=port)
        wait_for(lambda: _master(client), timeout=10)
        yield f"sentinel://127.0.0.1:{port};sentinel://127.0.0.1:{free_port()}/{target.get('db', 0)}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _master(client: redis.Redis) -> bool:
    try:
        return bool(client.sentinel_get_master_addr_by_name(MASTER))
    except redis.RedisError:
        return False


def test_sentinel_broker_url_takes_pushes_through_to_the_worker(app, make_app, sandbox, worker, sentinel):
    via = make_app(broker_url=sentinel, redis_master_name=MASTER)
    client = via.test_client()
    assert client.get("/readyz").json["redis"] is True
    headers, body = sandbox.providers["xportcn"].push(ALIBABA, "ORDER_CREATE")
    assert client.post(f"/callbacks/demo?token={TOKENS['demo']}", data=body, headers=headers).status_code == 200
    events_when(app, "processed")  # published through the Sentinel transport, run by the worker
