using System.Text.Json.Nodes;

namespace IlgpuLlm.Server;

/// <summary>
/// A request the server answers with an error status and OpenAI's error object,
/// <c>{"error": {"message", "type", "param", "code"}}</c>, which OpenAI's clients turn into their exceptions.
/// </summary>
public sealed class OpenAiError(int status, string message, string type = "invalid_request_error", string? param = null, string? code = null)
    : Exception(message)
{
    public int Status { get; } = status;
    public string Type { get; } = type;
    public string? Param { get; } = param;
    public string? Code { get; } = code;

    public static OpenAiError Invalid(string message, string? param = null, string? code = null) => new(400, message, param: param, code: code);

    public JsonObject ToJson() => new()
    {
        ["error"] = new JsonObject
        {
            ["message"] = Message,
            ["type"] = Type,
            ["param"] = Param,
            ["code"] = Code,
        },
    };
}
