#!/usr/bin/env python3
"""Load benchmark for OpenAI-compatible servers: `ilgpullm serve` beside llama-server.

C concurrent streaming clients (default 1, 2, 4, 8), each sending R fixed requests one after
another to /v1/completions (greedy, fixed prompt and max_tokens); reports aggregate generated
tokens/s, time to first token and inter-token latency (p50/p95) and failed requests. Loopback
only, bounded in count and time. It starts and stops each server itself, alternating the two
for every C. Never part of the tests or CI.

  python3 bench/serve/load.py --model MODEL.gguf --ilgpullm "dotnet src/Cli/bin/Release/net10.0/ilgpullm.dll" \
      --llama-server PATH/TO/llama-server --threads 2 --max-tokens 64 --requests 3
"""
import argparse, json, os, shlex, signal, statistics, subprocess, sys, threading, time, http.client

PROMPTS = ["Once upon a time", "The little dog ran to the park and", "Lily and Tom wanted to", "In a small town there was a"]


def percentile(values, p):
    if not values:
        return float("nan")
    values = sorted(values)
    k = (len(values) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def stream_request(port, prompt, max_tokens, timeout):
    """One streamed completion: returns (tokens, ttft, inter-token gaps) or raises."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    body = json.dumps({"prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "stream": True,
                       "model": "bench"})
    start = time.perf_counter()
    conn.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
    response = conn.getresponse()
    if response.status != 200:
        raise RuntimeError(f"HTTP {response.status}: {response.read()[:200]!r}")
    times, usage = [], None
    while True:
        line = response.readline()
        if not line:
            break
        line = line.strip()
        if not line.startswith(b"data: "):
            continue
        data = line[6:]
        if data == b"[DONE]":
            break
        event = json.loads(data)
        if event.get("usage"):
            usage = event["usage"].get("completion_tokens")
        choices = event.get("choices") or []
        if choices and choices[0].get("text"):
            times.append(time.perf_counter())
    conn.close()
    if not times:
        raise RuntimeError("no token came back")
    tokens = usage if usage else len(times)
    return tokens, times[0] - start, [b - a for a, b in zip(times, times[1:])]


def run_load(port, clients, requests, max_tokens, timeout):
    results, failures, lock = [], [], threading.Lock()

    def client(index):
        for r in range(requests):
            try:
                result = stream_request(port, PROMPTS[(index + r) % len(PROMPTS)], max_tokens, timeout)
                with lock:
                    results.append(result)
            except Exception as e:  # a failed request is counted, not fatal
                with lock:
                    failures.append(str(e))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    tokens = sum(r[0] for r in results)
    ttft = [r[1] for r in results]
    gaps = [g for r in results for g in r[2]]
    return {"tokens_per_s": tokens / wall, "tokens": tokens, "wall_s": wall,
            "ttft_p50": percentile(ttft, 50), "ttft_p95": percentile(ttft, 95),
            "itl_p50": percentile(gaps, 50), "itl_p95": percentile(gaps, 95),
            "failed": len(failures), "errors": failures[:3]}


def wait_ready(port, process, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("server not ready in time")


def start_server(kind, args, clients, port):
    if kind == "ilgpullm":
        command = shlex.split(args.ilgpullm) + ["serve", "-m", args.model, "--port", str(port), "--parallel", str(clients),
                                                "-t", str(args.threads), "-c", str(args.context), "--alias", "bench", "--device", "cpu"]
        env = None
    else:
        command = [args.llama_server, "-m", args.model, "--port", str(port), "-np", str(clients), "-t", str(args.threads),
                   "-c", str(args.context * clients), "--alias", "bench", "--host", "127.0.0.1"] + shlex.split(args.llama_args)
        env = dict(os.environ, LD_LIBRARY_PATH=os.path.dirname(os.path.abspath(args.llama_server)))
    log = open(os.path.join(args.logs, f"{kind}-{clients}.log"), "w")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        wait_ready(port, process, args.load_timeout)
    except Exception:
        stop_server(process)
        raise RuntimeError(f"{kind} did not start; see {log.name}")
    return process


def stop_server(process):
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--ilgpullm", required=True, help="command that runs ilgpullm")
    parser.add_argument("--llama-server", help="path of llama-server (omit to measure ilgpullm alone)")
    parser.add_argument("--llama-args", default="", help="more llama-server options, e.g. '--poll 0' (no spinning) on a busy machine")
    parser.add_argument("--clients", default="1,2,4,8")
    parser.add_argument("--requests", type=int, default=3, help="requests per client")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--context", type=int, default=512, help="positions per slot")
    parser.add_argument("--port", type=int, default=18400)
    parser.add_argument("--timeout", type=float, default=600, help="seconds per request at most")
    parser.add_argument("--load-timeout", type=float, default=300)
    parser.add_argument("--json", help="write the results here too")
    parser.add_argument("--logs", default=".", help="folder for the servers' logs")
    args = parser.parse_args()

    kinds = ["ilgpullm"] + (["llama-server"] if args.llama_server else [])
    rows = []
    print(f"model {args.model}; {args.requests} requests per client, max_tokens {args.max_tokens}, greedy; load {os.getloadavg()}")
    print(f"{'server':<13}{'C':>3}{'tok/s':>9}{'TTFT p50':>10}{'p95':>8}{'ITL p50':>9}{'p95':>8}{'failed':>8}")
    port = args.port
    for clients in [int(c) for c in args.clients.split(",")]:
        for kind in kinds:  # alternating the two servers at every C
            port += 1  # a fresh port each time: the last server's may still be closing
            process = start_server(kind, args, clients, port)
            try:
                run_load(port, 1, 1, 4, args.timeout)  # warm-up: first-use compilation, caches
                result = run_load(port, clients, args.requests, args.max_tokens, args.timeout)
            finally:
                stop_server(process)
            result.update(server=kind, clients=clients, load=os.getloadavg()[0])
            rows.append(result)
            print(f"{kind:<13}{clients:>3}{result['tokens_per_s']:>9.1f}{result['ttft_p50']:>10.3f}{result['ttft_p95']:>8.3f}"
                  f"{result['itl_p50'] * 1000:>8.1f}m{result['itl_p95'] * 1000:>7.1f}m{result['failed']:>8}  (load {result['load']:.1f})"
                  + (f" errors: {result['errors']}" if result["failed"] else ""), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
