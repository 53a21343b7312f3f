using System.CommandLine;
using System.CommandLine.Parsing;
using System.Text.RegularExpressions;

namespace IlgpuLlm.Cli;

/// <summary>
/// The parser's errors in the CLI's words: each names the option and the values it expects, with
/// no .NET type name (the numeric options parse themselves, see <see cref="NumberOptions"/>; this
/// covers what the parser reports on its own: lists of allowed values, missing values, and any
/// conversion an option was left to it for).
/// </summary>
public static partial class ParseErrors
{
    public static string Describe(ParseError error)
    {
        string message = CliRunner.OneLine(error.Message);
        string? option = error.SymbolResult switch
        {
            OptionResult o => o.Option.Name,
            ArgumentResult { Parent: OptionResult o } => o.Option.Name,
            _ => null,
        };
        if (CannotParse().Match(message) is { Success: true } conversion)
            return $"{conversion.Groups[2].Value} '{conversion.Groups[1].Value}' is not {TypeInWords(conversion.Groups[3].Value)}";
        if (NotRecognized().Match(message) is { Success: true } notAllowed && option != null)
        {
            var allowed = string.Join(", ", notAllowed.Groups[2].Value.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)
                .Select(v => v.Trim('\'')));
            return $"{option} '{notAllowed.Groups[1].Value}' is not one of {allowed}";
        }
        if (MissingValue().Match(message) is { Success: true } missing)
            return $"{option ?? missing.Groups[1].Value} needs a value";
        if (Repeated().Match(message) is { Success: true } repeated)
            return $"{option ?? repeated.Groups[1].Value} was given {repeated.Groups[2].Value} times; give it once";
        return WithoutTypeNames(message);
    }

    /// <summary>Any .NET type name in a message (a library's conversion error, say) in words.</summary>
    public static string WithoutTypeNames(string message) => TypeName().Replace(message, m => TypeInWords(m.Value));

    /// <summary>A .NET type the parser names, as users would say it.</summary>
    static string TypeInWords(string type) => type.Trim('\'') switch
    {
        var t when t.Contains("Int32") || t.Contains("Int64") || t.Contains("Int16") => "a whole number",
        var t when t.Contains("UInt") => "a whole number, 0 or more",
        var t when t.Contains("Single") || t.Contains("Double") || t.Contains("Decimal") => "a number",
        var t when t.Contains("Boolean") => "true or false",
        var t when t.Contains("String") => "text",
        _ => "a value of the expected kind",
    };

    [GeneratedRegex(@"Cannot parse argument '(.*)' for option '(.*)' as expected type '(.*)'")]
    private static partial Regex CannotParse();

    [GeneratedRegex(@"^Argument '(.*)' not recognized\. Must be one of:?\s*(.*)$")]
    private static partial Regex NotRecognized();

    [GeneratedRegex(@"^Required argument missing for option: '(.*)'")]
    private static partial Regex MissingValue();

    [GeneratedRegex(@"^Option '(.*)' expects a single argument but (\d+) were provided")]
    private static partial Regex Repeated();

    [GeneratedRegex(@"'?System\.[A-Za-z0-9_.`\[\],]+'?")]
    private static partial Regex TypeName();
}
