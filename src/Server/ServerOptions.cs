namespace IlgpuLlm.Server;

/// <summary>How <see cref="OpenAiServer"/> listens and whom it answers.</summary>
public sealed record ServerOptions
{
    /// <summary>The address to bind: loopback unless asked otherwise, so a model is never exposed by accident.</summary>
    public string Host { get; init; } = "127.0.0.1";

    /// <summary>The port; 0 picks a free one (<see cref="OpenAiServer.Address"/> tells which).</summary>
    public int Port { get; init; } = 8080;

    /// <summary>When set, every /v1 request must carry <c>Authorization: Bearer</c> this key (401 otherwise); /health and /metrics stay open for probes and scrapers.</summary>
    public string? ApiKey { get; init; }

    /// <summary>The model's id in /v1/models and the one requests must name.</summary>
    public required string ModelName { get; init; }

    /// <summary>Seconds a client is told to wait (Retry-After) when the queue is full or the model is loading.</summary>
    public int RetryAfterSeconds { get; init; } = 1;

    public void Validate()
    {
        if (string.IsNullOrWhiteSpace(Host))
            throw new ArgumentException("the host to bind is empty", nameof(Host));
        if (Host != "localhost" && !System.Net.IPAddress.TryParse(Host, out _))
            throw new ArgumentException($"host '{Host}' is not an IP address (use 127.0.0.1, ::1, 0.0.0.0 or localhost)", nameof(Host));
        if (Port is < 0 or > 65535)
            throw new ArgumentOutOfRangeException(nameof(Port), Port, $"port {Port} must be from 0 to 65535");
        if (string.IsNullOrWhiteSpace(ModelName))
            throw new ArgumentException("the model name is empty", nameof(ModelName));
        if (ApiKey is { Length: 0 })
            throw new ArgumentException("the API key is empty; leave it unset for none", nameof(ApiKey));
    }
}
