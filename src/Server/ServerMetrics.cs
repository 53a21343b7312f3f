using Prometheus;

namespace IlgpuLlm.Server;

/// <summary>
/// The server's Prometheus metrics: the gauges the Kubernetes Gateway API Inference Extension and
/// llm-d read to route and autoscale — requests waiting and running, the KV cache's usage ratio —
/// and prompt and generated token counters, finished requests by reason, time to first token,
/// inter-token latency and whole-request latency histograms. They carry vLLM's names with the
/// prefix <c>ilgpullm_</c> in place of <c>vllm:</c> (<c>ilgpullm_num_requests_waiting</c> for
/// <c>vllm:num_requests_waiting</c>): prometheus-net allows no colon in a name, and a router is
/// told the names by its flags (docs/SERVING.md has the mapping). Each server has its own
/// registry, so several can live in one process (tests).
/// </summary>
public sealed class ServerMetrics
{
    static readonly double[] LatencyBuckets =
        [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80];

    public ServerMetrics(string modelName, Func<SchedulerStatus?> status)
    {
        Registry = Metrics.NewCustomRegistry();
        var factory = Metrics.WithCustomRegistry(Registry).WithLabels(new Dictionary<string, string> { ["model_name"] = modelName });
        var waiting = factory.CreateGauge("ilgpullm_num_requests_waiting", "Requests waiting for a cache slot.");
        var running = factory.CreateGauge("ilgpullm_num_requests_running", "Requests in the running batch.");
        var cacheUsage = factory.CreateGauge("ilgpullm_kv_cache_usage_perc", "KV-cache usage: 1 means full (positions the running requests occupy over all slots' positions).");
        PromptTokens = factory.CreateCounter("ilgpullm_prompt_tokens_total", "Prompt tokens of finished requests.");
        GeneratedTokens = factory.CreateCounter("ilgpullm_generation_tokens_total", "Tokens generated.");
        FinishedRequests = factory.CreateCounter("ilgpullm_request_success_total", "Requests that finished, by reason (stop, length).", ["finished_reason"]);
        FailedRequests = factory.CreateCounter("ilgpullm_requests_failed_total", "Requests that ended without finishing, by cause.", ["cause"]);
        TimeToFirstToken = factory.CreateHistogram("ilgpullm_time_to_first_token_seconds", "Seconds from a request's arrival to its first token.",
            new HistogramConfiguration { Buckets = LatencyBuckets });
        InterTokenLatency = factory.CreateHistogram("ilgpullm_inter_token_latency_seconds", "Seconds between two tokens of a request.",
            new HistogramConfiguration { Buckets = LatencyBuckets });
        RequestLatency = factory.CreateHistogram("ilgpullm_e2e_request_latency_seconds", "Seconds from a request's arrival to its end.",
            new HistogramConfiguration { Buckets = LatencyBuckets });
        Registry.AddBeforeCollectCallback(() =>
        {
            if (status() is not { } now)
                return;
            waiting.Set(now.Waiting);
            running.Set(now.Running);
            cacheUsage.Set(now.CacheUsage);
        });
    }

    public CollectorRegistry Registry { get; }
    public Counter PromptTokens { get; }
    public Counter GeneratedTokens { get; }
    public Counter FinishedRequests { get; }
    public Counter FailedRequests { get; }
    public Histogram TimeToFirstToken { get; }
    public Histogram InterTokenLatency { get; }
    public Histogram RequestLatency { get; }
}
