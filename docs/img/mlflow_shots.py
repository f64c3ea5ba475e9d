"""Screenshots of the MLflow UI as a person sees it: mlflow_runs.png and mlflow_charts.png.

    python docs/img/mlflow_shots.py sqlite:///$PWD/mlflow.db docs/img

Starts `mlflow server` on the store (127.0.0.1), drives Debian's headless `chromium` through
its DevTools protocol (pip install websocket-client): closes the assistant panel, expands the
pipeline runs (the "+" beside each, as a click would), waits for the charts, and captures.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

import websocket

CLOSE_ASSISTANT = (
    "[...document.querySelectorAll('button')].filter(e => /assistant/i.test("
    "e.dataset.componentId || '') && /close/i.test(e.dataset.componentId || ''))"
    ".forEach(e => e.click())"
)
EXPAND = (
    "[...document.querySelectorAll('button[data-component-id*=runnamecellrenderer]')]"
    ".forEach(e => e.click())"
)


def wait_http(url: str, seconds: float = 120) -> str:
    end = time.time() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return r.read().decode()
        except OSError:
            if time.time() > end:
                raise
            time.sleep(0.5)


def shoot(url: str, out: str, width: int, height: int, port: int = 9333) -> None:
    profile = tempfile.mkdtemp()
    chromium = subprocess.Popen(
        [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-sync",
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            f"--remote-debugging-port={port}",
            "--remote-allow-origins=*",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        tabs = json.loads(wait_http(f"http://127.0.0.1:{port}/json"))
        ws = websocket.create_connection(
            next(t for t in tabs if t["type"] == "page")["webSocketDebuggerUrl"], timeout=60
        )
        ids = iter(range(1, 1000))

        def call(method: str, **params) -> dict:
            n = next(ids)
            ws.send(json.dumps({"id": n, "method": method, "params": params}))
            while (msg := json.loads(ws.recv())).get("id") != n:
                pass
            return msg.get("result", {})

        call(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )
        call("Page.navigate", url=url)
        time.sleep(12)
        for js in (CLOSE_ASSISTANT, EXPAND):
            call("Runtime.evaluate", expression=js)
            time.sleep(15)  # the expanded runs' curves load after the click
        with open(out, "wb") as fh:
            fh.write(base64.b64decode(call("Page.captureScreenshot", format="png")["data"]))
        print(out)
    finally:
        os.killpg(chromium.pid, 15)
        chromium.wait()
        shutil.rmtree(profile, ignore_errors=True)


def main() -> None:
    store, out_dir = sys.argv[1], sys.argv[2]
    port = 5094
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            store,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/health")
        exp = json.loads(
            wait_http(f"{base}/api/2.0/mlflow/experiments/get-by-name?experiment_name=deepgal")
        )["experiment"]["experiment_id"]
        runs = f"{base}/#/experiments/{exp}/runs?workflowType=machine_learning"
        shoot(runs, f"{out_dir}/mlflow_runs.png", 1900, 760)
        shoot(runs + "&compareRunsMode=CHART", f"{out_dir}/mlflow_charts.png", 1900, 1150)
    finally:
        os.killpg(server.pid, 15)
        server.wait()


if __name__ == "__main__":
    main()
