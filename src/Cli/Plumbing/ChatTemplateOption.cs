using System.CommandLine;
using IlgpuLlm.Model.Tokenizers;

namespace IlgpuLlm.Cli;

/// <summary>
/// <c>--chat-template</c>, the same in every command that renders messages: its help lists every
/// template name accepted, and a name outside that list is a usage error that lists them again.
/// </summary>
public static class ChatTemplateOption
{
    public static Option<string?> Create()
    {
        var template = new Option<string?>("--chat-template")
        {
            Description = $"Chat format (default: from the model): {string.Join(", ", ChatTemplate.Names)}",
        };
        template.Validators.Add(result =>
        {
            if (result.Tokens.Count > 0 && !ChatTemplate.Names.Contains(result.Tokens[^1].Value.Trim().ToLowerInvariant()))
                result.AddError($"--chat-template '{result.Tokens[^1].Value}' is not one of {string.Join(", ", ChatTemplate.Names)}");
        });
        return template;
    }
}
