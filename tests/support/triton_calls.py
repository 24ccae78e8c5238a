"""Makes the calls a test asks for with NVIDIA's tritonclient (gRPC) and
prints what came back, for the end-to-end tests of inferd's KServe v2
protocol (tests/e2e/kserve.rs).

    python triton_calls.py HOST:PORT < calls.json > answers.json

calls.json is a list of calls, each {"call": NAME, ...}:
  server_live, server_ready, server_metadata
  model_ready / model_metadata: "model"
  infer: "model", "inputs": [{"name", "texts": [...]} or {"name", "files": [...]}],
         optional "parameters" (a dict) and "outputs" (names)
  load: "model", "config" (a dict: LoadModelRequest fields); unload: "model"
The answer of each call is {"ok": ...} or {"error": {"status", "message"}}.
Output tensors come back as {"datatype", "shape", "data"}: BYTES as UTF-8
text when they are, else {"base64": ...}.
"""

import base64
import json
import sys

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException


def tensor_data(array):
    if array.dtype == object:
        out = []
        for item in array.reshape(-1):
            try:
                out.append(item.decode("utf-8"))
            except UnicodeDecodeError:
                out.append({"base64": base64.b64encode(item).decode()})
        return out
    return array.reshape(-1).tolist()


def infer(client, call):
    inputs = []
    for spec in call["inputs"]:
        if "texts" in spec:
            values = [t.encode("utf-8") for t in spec["texts"]]
        else:
            values = [open(path, "rb").read() for path in spec["files"]]
        array = np.array(values, dtype=object)
        tensor = grpcclient.InferInput(spec["name"], list(array.shape), "BYTES")
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    outputs = [grpcclient.InferRequestedOutput(name) for name in call.get("outputs", [])] or None
    result = client.infer(
        call["model"],
        inputs,
        outputs=outputs,
        parameters=call.get("parameters"),
        request_id=call.get("id", ""),
    )
    response = result.get_response(as_json=True)
    tensors = {}
    for output in response["outputs"]:
        array = result.as_numpy(output["name"])
        tensors[output["name"]] = {
            "datatype": output["datatype"],
            "shape": list(array.shape),
            "data": tensor_data(array),
        }
    return {"id": response.get("id", ""), "model_version": response.get("model_version", ""), "outputs": tensors}


def run(client, call):
    kind = call["call"]
    if kind == "server_live":
        return client.is_server_live()
    if kind == "server_ready":
        return client.is_server_ready()
    if kind == "server_metadata":
        return client.get_server_metadata(as_json=True)
    if kind == "model_ready":
        return client.is_model_ready(call["model"])
    if kind == "model_metadata":
        return client.get_model_metadata(call["model"], as_json=True)
    if kind == "infer":
        return infer(client, call)
    if kind == "load":
        return client.load_model(call["model"], config=json.dumps(call["config"]))
    if kind == "unload":
        return client.unload_model(call["model"])
    raise ValueError(f"unknown call {kind}")


def main():
    client = grpcclient.InferenceServerClient(url=sys.argv[1])
    answers = []
    for call in json.load(sys.stdin):
        try:
            answers.append({"ok": run(client, call)})
        except InferenceServerException as e:
            answers.append({"error": {"status": e.status(), "message": e.message()}})
    json.dump(answers, sys.stdout)


if __name__ == "__main__":
    main()
