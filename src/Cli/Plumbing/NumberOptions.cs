using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;
using System.Numerics;

namespace IlgpuLlm.Cli;

/// <summary>
/// The values a numeric option accepts and how to say them in words ("a whole number from 1 to
/// 512"). Every numeric option of every command is made by <see cref="NumberOptions"/> with one of
/// these, so a value that does not parse or lies outside the range is a usage error naming the
/// option, the value given and the values accepted — never a .NET type name.
/// </summary>
public sealed record Accepts<T>(Func<T, bool> Test, string Words) where T : struct, INumber<T>
{
    public static Accepts<T> AtLeast(T min, string? note = null) =>
        new(v => v >= min, $"{Kind}, {Format(min)} or more{Note(note)}");

    public static Accepts<T> Between(T min, T max, string? note = null) =>
        new(v => v >= min && v <= max, $"{Kind} from {Format(min)} to {Format(max)}{Note(note)}");

    /// <summary>A number above <paramref name="min"/> (exclusive) up to <paramref name="max"/> (inclusive).</summary>
    public static Accepts<T> Above(T min, T max, string? note = null) =>
        new(v => v > min && v <= max, $"{Kind} above {Format(min)} and at most {Format(max)}{Note(note)}");

    /// <summary>"a whole number" or "a number" (finite: NaN and infinities fail every range).</summary>
    public static string Kind => IsInteger ? "a whole number" : "a number";

    internal static bool IsInteger => typeof(T) == typeof(int) || typeof(T) == typeof(long) || typeof(T) == typeof(ulong);

    public static string Format(T value) => value.ToString(null, CultureInfo.InvariantCulture);

    static string Note(string? note) => note == null ? "" : $" ({note})";
}

/// <summary>Factories for numeric options; see <see cref="Accepts{T}"/>.</summary>
public static class NumberOptions
{
    public static Option<int> Int(string name, string[] aliases, string description, Accepts<int> accepts, int? defaultValue = null) =>
        Create(name, aliases, description, accepts, defaultValue);

    public static Option<ulong> ULong(string name, string[] aliases, string description, Accepts<ulong> accepts, ulong? defaultValue = null) =>
        Create(name, aliases, description, accepts, defaultValue);

    public static Option<float> Float(string name, string[] aliases, string description, Accepts<float> accepts, float? defaultValue = null) =>
        Create(name, aliases, description, accepts, defaultValue);

    public static Option<double> Double(string name, string[] aliases, string description, Accepts<double> accepts, double? defaultValue = null) =>
        Create(name, aliases, description, accepts, defaultValue);

    static Option<T> Create<T>(string name, string[] aliases, string description, Accepts<T> accepts, T? defaultValue)
        where T : struct, INumber<T>
    {
        var option = new Option<T>(name, aliases)
        {
            Description = $"{description}; {accepts.Words}",
            HelpName = Accepts<T>.IsInteger ? "N" : "X",
            CustomParser = result => Parse(result, name, accepts, defaultValue ?? default),
        };
        if (defaultValue is T value)
            option.DefaultValueFactory = _ => value;
        return option;
    }

    /// <summary>
    /// --seed: -1 (llama.cpp's "pick one at random", the default) or a whole number from 0 to
    /// 2^64 − 1; read it with <see cref="SeedValue"/>. (The option holds the text: the parser
    /// cannot hand a custom-parsed null back for a nullable value.)
    /// </summary>
    public static Option<string?> Seed(string description)
    {
        const string words = $"-1 (a new random seed) or a whole number from 0 to 18446744073709551615";
        var option = new Option<string?>("--seed", "-s") { Description = $"{description}; {words}", HelpName = "N" };
        option.Validators.Add(result =>
        {
            if (result.Tokens.Count == 0)
                return;
            string text = result.Tokens[^1].Value;
            if (text != "-1" && !ulong.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out _))
                result.AddError(Message("--seed", text, words, parsed: BigInteger.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out _)));
        });
        return option;
    }

    /// <summary>The seed a validated --seed names; null for -1 or none (pick one at random).</summary>
    public static ulong? SeedValue(string? text) =>
        text == null || text == "-1" ? null : ulong.Parse(text, NumberStyles.None, CultureInfo.InvariantCulture);

    static T Parse<T>(ArgumentResult result, string name, Accepts<T> accepts, T fallback) where T : struct, INumber<T>
    {
        if (result.Tokens.Count == 0)
            return fallback;
        string text = Text(result);
        var style = Accepts<T>.IsInteger ? NumberStyles.AllowLeadingSign : NumberStyles.Float;
        if (T.TryParse(text, style, CultureInfo.InvariantCulture, out T value) && T.IsFinite(value) && accepts.Test(value))
            return value;
        // A whole number too large for the type is out of range, not "not a number".
        bool parsed = T.TryParse(text, style, CultureInfo.InvariantCulture, out _)
            || (Accepts<T>.IsInteger && BigInteger.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out _));
        result.AddError(Message(name, text, accepts.Words, parsed && !IsNaN(text)));
        return fallback;
    }

    static bool IsNaN(string text) => text.Contains("nan", StringComparison.OrdinalIgnoreCase);

    static string Text(ArgumentResult result) => result.Tokens.Count > 0 ? result.Tokens[^1].Value : "";

    static string Message(string name, string text, string words, bool parsed) =>
        parsed ? $"{name} {text} is out of range; expected {words}"
            : $"{name} '{text}' is not {(words.StartsWith("a whole", StringComparison.Ordinal) ? "a whole number" : "a number")}; expected {words}";
}
