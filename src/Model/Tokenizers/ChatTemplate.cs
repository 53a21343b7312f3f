using System.Text;
using System.Text.RegularExpressions;
using IlgpuLlm.Model.Formats;

namespace IlgpuLlm.Model.Tokenizers;

/// <summary>One turn of a conversation. Roles are "system", "user" and "assistant".</summary>
public sealed record ChatMessage(string Role, string Content)
{
    public static ChatMessage System(string content) => new("system", content);
    public static ChatMessage User(string content) => new("user", content);
    public static ChatMessage Assistant(string content) => new("assistant", content);
}

/// <summary>The prompt formats this engine renders without a Jinja interpreter.</summary>
public enum ChatFormat
{
    /// <summary>Llama 3: &lt;|start_header_id|&gt;role&lt;|end_header_id|&gt;\n\ncontent&lt;|eot_id|&gt;, BOS first.</summary>
    Llama3,
    /// <summary>Llama 2 chat: &lt;s&gt;[INST] &lt;&lt;SYS&gt;&gt;\n…\n&lt;&lt;/SYS&gt;&gt;\n\nuser [/INST] answer &lt;/s&gt;.</summary>
    Llama2,
    /// <summary>Gemma: &lt;start_of_turn&gt;user\n…&lt;end_of_turn&gt;\n, the assistant called "model", no system role.</summary>
    Gemma,
    /// <summary>ChatML (Qwen): &lt;|im_start|&gt;role\ncontent&lt;|im_end|&gt;\n, with an optional default system prompt.</summary>
    ChatML,
}

/// <summary>
/// Renders a conversation the way the model's Hugging Face chat template does, for the four families'
/// templates, chosen by the distinctive markers in the stored template text (GGUF
/// <c>tokenizer.chat_template</c>, tokenizer_config.json <c>chat_template</c>), by the model family, or by name.
/// The template texts followed are quoted at each renderer.
/// </summary>
public sealed class ChatTemplate
{
    /// <summary>Qwen2.5-Instruct's system prompt when the conversation has none.</summary>
    public const string Qwen25DefaultSystemPrompt = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.";

    ChatTemplate(ChatFormat format, string? defaultSystemPrompt)
    {
        Format = format;
        DefaultSystemPrompt = defaultSystemPrompt;
    }

    public ChatFormat Format { get; }

    /// <summary>ChatML only: the system turn inserted when the conversation does not start with one (Qwen's templates do this).</summary>
    public string? DefaultSystemPrompt { get; }

    /// <summary>The text that ends a turn; generation of a reply stops at its token.</summary>
    public string EndOfTurn => Format switch
    {
        ChatFormat.Llama3 => "<|eot_id|>",
        ChatFormat.Llama2 => "</s>",
        ChatFormat.Gemma => "<end_of_turn>",
        _ => "<|im_end|>",
    };

    /// <summary>
    /// The special tokens the rendered prompt is built from, besides BOS: the turn markers the
    /// template writes, which the vocabulary must hold as single special tokens.
    /// </summary>
    public IReadOnlyList<string> MarkerTokens => Format switch
    {
        ChatFormat.Llama3 => ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
        ChatFormat.Gemma => ["<start_of_turn>", "<end_of_turn>"],
        ChatFormat.ChatML => ["<|im_start|>", "<|im_end|>"],
        _ => [],
    };

    /// <summary>
    /// What a vocabulary lacks to render this template: marker tokens that are not special tokens
    /// of it (their text would be split into ordinary pieces and the model would see no turns),
    /// and "BOS" when the template starts with BOS and the vocabulary has none. Empty when the
    /// template can be used.
    /// </summary>
    public IReadOnlyList<string> MissingTokens(ITokenizer tokenizer)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        var missing = MarkerTokens.Where(marker => !tokenizer.TryGetSpecialTokenId(marker, out _)).ToList();
        if (Format != ChatFormat.ChatML && tokenizer.Special.Bos is null)
            missing.Insert(0, "BOS");
        return missing;
    }

    public override string ToString() =>
        DefaultSystemPrompt is null ? Format.ToString() : $"{Format} (default system prompt \"{DefaultSystemPrompt}\")";

    public static ChatTemplate Create(ChatFormat format, string? defaultSystemPrompt = null)
    {
        if (defaultSystemPrompt is not null && format != ChatFormat.ChatML)
            throw new ArgumentException($"only ChatML has a default system prompt, not {format}", nameof(defaultSystemPrompt));
        return new ChatTemplate(format, defaultSystemPrompt);
    }

    /// <summary>
    /// Recognises a stored Jinja template by its markers: &lt;|start_header_id|&gt; (Llama 3),
    /// &lt;start_of_turn&gt; (Gemma), &lt;|im_start|&gt; (ChatML, with the default system prompt the template
    /// writes when the first message is not a system one), [INST] with &lt;&lt;SYS&gt;&gt; (Llama 2).
    /// Null when the template is none of these.
    /// </summary>
    public static ChatTemplate? Detect(string? templateText)
    {
        if (string.IsNullOrEmpty(templateText))
            return null;
        if (templateText.Contains("<|start_header_id|>", StringComparison.Ordinal))
            return new ChatTemplate(ChatFormat.Llama3, null);
        if (templateText.Contains("<start_of_turn>", StringComparison.Ordinal))
            return new ChatTemplate(ChatFormat.Gemma, null);
        if (templateText.Contains("<|im_start|>", StringComparison.Ordinal))
            return new ChatTemplate(ChatFormat.ChatML, DefaultSystemIn(templateText));
        if (templateText.Contains("[INST]", StringComparison.Ordinal) && templateText.Contains("<<SYS>>", StringComparison.Ordinal))
            return new ChatTemplate(ChatFormat.Llama2, null);
        return null;
    }

    /// <summary>
    /// The format a user names: llama3 (llama-3), llama2 (llama-2), gemma, chatml, or qwen/qwen2/qwen2.5
    /// (ChatML with Qwen2.5's default system prompt).
    /// </summary>
    /// <exception cref="ArgumentException">The name is none of these.</exception>
    /// <summary>Every name <see cref="FromName"/> accepts (case does not matter).</summary>
    public static readonly IReadOnlyList<string> Names =
        ["llama3", "llama-3", "llama2", "llama-2", "gemma", "gemma2", "gemma3", "chatml", "qwen", "qwen2", "qwen2.5"];

    public static ChatTemplate FromName(string name)
    {
        return name.Trim().ToLowerInvariant() switch
        {
            "llama3" or "llama-3" => new ChatTemplate(ChatFormat.Llama3, null),
            "llama2" or "llama-2" => new ChatTemplate(ChatFormat.Llama2, null),
            "gemma" or "gemma2" or "gemma3" => new ChatTemplate(ChatFormat.Gemma, null),
            "chatml" => new ChatTemplate(ChatFormat.ChatML, null),
            "qwen" or "qwen2" or "qwen2.5" => new ChatTemplate(ChatFormat.ChatML, Qwen25DefaultSystemPrompt),
            _ => throw new ArgumentException($"unknown chat template '{name}' (known: {string.Join(", ", Names)})", nameof(name)),
        };
    }

    /// <summary>
    /// The template for a model family (GGUF general.architecture or config.json model_type): llama is
    /// Llama 3 when the vocabulary has &lt;|start_header_id|&gt;, else Llama 2; qwen2 is ChatML with Qwen2.5's
    /// default system prompt; gemma, gemma2, gemma3 are Gemma. Null for other families.
    /// </summary>
    public static ChatTemplate? ForFamily(string family, ITokenizer? tokenizer = null) => family.ToLowerInvariant() switch
    {
        "llama" => tokenizer is not null && tokenizer.TryGetSpecialTokenId("<|start_header_id|>", out _)
            ? new ChatTemplate(ChatFormat.Llama3, null)
            : new ChatTemplate(ChatFormat.Llama2, null),
        "qwen2" => new ChatTemplate(ChatFormat.ChatML, Qwen25DefaultSystemPrompt),
        "gemma" or "gemma2" or "gemma3" or "gemma3_text" => new ChatTemplate(ChatFormat.Gemma, null),
        _ => null,
    };

    /// <summary>
    /// Picks the template: the one the user named, else the one the model stores (if recognised), else
    /// the family's.
    /// </summary>
    /// <exception cref="InvalidOperationException">None of them gives a template this engine renders.</exception>
    public static ChatTemplate Resolve(string? userChoice, string? storedTemplate, string? family, ITokenizer? tokenizer = null)
    {
        if (!string.IsNullOrWhiteSpace(userChoice))
            return FromName(userChoice);
        return Detect(storedTemplate)
            ?? (family is null ? null : ForFamily(family, tokenizer))
            ?? throw new InvalidOperationException(storedTemplate is null
                ? $"no chat template is stored and family '{family}' has no built-in one; name one (llama3, llama2, gemma, chatml, qwen2.5)"
                : $"the stored chat template is not one this engine recognises and family '{family}' has no built-in one; name one (llama3, llama2, gemma, chatml, qwen2.5)");
    }

    /// <summary>
    /// <see cref="Resolve"/> for a GGUF model: its <c>tokenizer.chat_template</c> and <c>general.architecture</c>.
    /// </summary>
    public static ChatTemplate FromGguf(GgufFile gguf, string? userChoice, ITokenizer? tokenizer = null)
    {
        ArgumentNullException.ThrowIfNull(gguf);
        return Resolve(
            userChoice,
            gguf.TryGetString("tokenizer.chat_template", out var stored) ? stored : null,
            gguf.TryGetString("general.architecture", out var family) ? family : null,
            tokenizer);
    }

    /// <summary>
    /// The prompt text, as the Hugging Face template would render it (BOS included where the template
    /// writes it). Encode it with <c>addBos: false, parseSpecial: true</c>, or use <see cref="Encode"/>,
    /// which also keeps special-token text inside the messages from being parsed.
    /// </summary>
    /// <exception cref="ArgumentException">The roles do not follow the order the template demands.</exception>
    public string Render(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt) =>
        Build(messages, addGenerationPrompt, bos: null, eos: null).Text;

    /// <summary>
    /// The prompt's token ids: the rendered text encoded in one piece (so the ids are those of
    /// <see cref="Render"/>'s text), with special tokens recognised in the template's own text only. BOS
    /// and EOS are spelled as the tokenizer spells them.
    /// </summary>
    public int[] Encode(ITokenizer tokenizer, IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        string? Piece(int? id) => id is int i ? tokenizer.GetPiece(i) : null;
        var (text, trusted) = Build(messages, addGenerationPrompt, Piece(tokenizer.Special.Bos), Piece(tokenizer.Special.Eos));
        return tokenizer.Encode(text, addBos: false, trusted);
    }

    (string Text, List<Range> Trusted) Build(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt, string? bos, string? eos)
    {
        ArgumentNullException.ThrowIfNull(messages);
        foreach (var message in messages)
            if (message?.Role is null || message.Content is null)
                throw new ArgumentException("a message has no role or no content", nameof(messages));
        var output = new PromptBuilder();
        switch (Format)
        {
            case ChatFormat.Llama3: RenderLlama3(output, messages, addGenerationPrompt, bos ?? "<|begin_of_text|>"); break;
            case ChatFormat.Llama2: RenderLlama2(output, messages, bos ?? "<s>", eos ?? "</s>"); break;
            case ChatFormat.Gemma: RenderGemma(output, messages, addGenerationPrompt, bos ?? "<bos>"); break;
            default: RenderChatML(output, messages, addGenerationPrompt); break;
        }
        return (output.Text, output.Trusted);
    }

    // meta-llama/Meta-Llama-3-8B-Instruct tokenizer_config.json:
    // {% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] +
    // '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}
    // {% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}
    static void RenderLlama3(PromptBuilder output, IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt, string bos)
    {
        for (int i = 0; i < messages.Count; i++)
        {
            if (i == 0)
                output.Template(bos);
            output.Template("<|start_header_id|>");
            output.Message(messages[i].Role);
            output.Template("<|end_header_id|>\n\n");
            output.Message(PythonStrip(messages[i].Content));
            output.Template("<|eot_id|>");
        }
        if (addGenerationPrompt)
            output.Template("<|start_header_id|>assistant<|end_header_id|>\n\n");
    }

    // meta-llama/Llama-2-7b-chat-hf tokenizer_config.json (it has no generation prompt; the reply follows [/INST]):
    // {% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}
    // {% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}
    // {% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}
    // {% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\n' + system_message + '\n<</SYS>>\n\n' + message['content'] %}
    // {% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}
    // {% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}
    static void RenderLlama2(PromptBuilder output, IReadOnlyList<ChatMessage> messages, string bos, string eos)
    {
        var (system, turns) = SplitSystem(messages);
        CheckAlternation(turns);
        for (int i = 0; i < turns.Count; i++)
        {
            var message = turns[i];
            var content = message.Content;
            if (i == 0 && system is not null)
            {
                // The system block is glued to the first user message and the whole is stripped as one string.
                var joined = PythonStrip("<<SYS>>\n" + system + "\n<</SYS>>\n\n" + content);
                output.Template(bos + "[INST] ");
                output.Message(joined);
                output.Template(" [/INST]");
                continue;
            }
            if (message.Role == "user")
            {
                output.Template(bos + "[INST] ");
                output.Message(PythonStrip(content));
                output.Template(" [/INST]");
            }
            else if (message.Role == "assistant")
            {
                output.Template(" ");
                output.Message(PythonStrip(content));
                output.Template(" " + eos);
            }
        }
    }

    // google/gemma-3-*-it tokenizer_config.json (Gemma 1 and 2 reject a system message; Gemma 3 folds it into the first user turn, and so do we):
    // {{ bos_token }}{%- if messages[0]['role'] == 'system' -%}{%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}
    // {%- set loop_messages = messages[1:] -%}{%- else -%}{%- set first_user_prefix = "" -%}{%- set loop_messages = messages -%}{%- endif -%}
    // {%- for message in loop_messages -%}{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}{{ raise_exception(...) }}{%- endif -%}
    // {%- if (message['role'] == 'assistant') -%}{%- set role = "model" -%}{%- else -%}{%- set role = message['role'] -%}{%- endif -%}
    // {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else "") }}{{ message['content'] | trim }}{{ '<end_of_turn>\n' }}
    // {%- endfor -%}{%- if add_generation_prompt -%}{{'<start_of_turn>model\n'}}{%- endif -%}
    static void RenderGemma(PromptBuilder output, IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt, string bos)
    {
        var (system, turns) = SplitSystem(messages);
        CheckAlternation(turns);
        output.Template(bos);
        for (int i = 0; i < turns.Count; i++)
        {
            output.Template("<start_of_turn>");
            output.Message(turns[i].Role == "assistant" ? "model" : turns[i].Role);
            output.Template("\n");
            if (i == 0 && system is not null)
                output.Message(system + "\n\n");
            output.Message(PythonStrip(turns[i].Content));
            output.Template("<end_of_turn>\n");
        }
        if (addGenerationPrompt)
            output.Template("<start_of_turn>model\n");
    }

    // Qwen/Qwen2.5-7B-Instruct tokenizer_config.json, without tools:
    // {%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
    // {%- else %}{{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}{%- endif %}
    // {%- for message in messages %}{%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
    // {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}{%- endif %}{%- endfor %}
    // {%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- endif %}
    // Plain ChatML (and Qwen2's own template with its "You are a helpful assistant.") is the same without or with another default.
    void RenderChatML(PromptBuilder output, IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt)
    {
        bool startsWithSystem = messages.Count > 0 && messages[0].Role == "system";
        if (!startsWithSystem && DefaultSystemPrompt is not null)
            output.Template("<|im_start|>system\n" + DefaultSystemPrompt + "<|im_end|>\n");
        foreach (var message in messages)
        {
            output.Template("<|im_start|>");
            output.Message(message.Role);
            output.Template("\n");
            output.Message(message.Content);
            output.Template("<|im_end|>\n");
        }
        if (addGenerationPrompt)
            output.Template("<|im_start|>assistant\n");
    }

    static (string? System, List<ChatMessage> Turns) SplitSystem(IReadOnlyList<ChatMessage> messages) =>
        messages.Count > 0 && messages[0].Role == "system"
            ? (messages[0].Content, messages.Skip(1).ToList())
            : (null, messages.ToList());

    static void CheckAlternation(List<ChatMessage> turns)
    {
        for (int i = 0; i < turns.Count; i++)
            if (turns[i].Role == "user" != (i % 2 == 0))
                throw new ArgumentException("Conversation roles must alternate user/assistant/user/assistant/... (after an optional first system message)");
    }

    /// <summary>Python's str.strip() (Jinja's trim): Unicode whitespace plus the separators U+001C..U+001F.</summary>
    internal static string PythonStrip(string s) => s.Trim(PythonWhitespace);

    static readonly char[] PythonWhitespace = Enumerable.Range(0, 0x10000)
        .Select(c => (char)c)
        .Where(c => char.IsWhiteSpace(c) || c is >= '\u001C' and <= '\u001F')
        .ToArray();

    /// <summary>The literal that a ChatML template writes as its system turn when the conversation has none.</summary>
    static string? DefaultSystemIn(string template)
    {
        // e.g. {{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}
        var match = Regex.Match(template, @"<\|im_start\|>system\\n((?:[^'""\\{}<]|\\.)+?)<\|im_end\|>");
        return match.Success ? UnescapeJinjaString(match.Groups[1].Value) : null;
    }

    static string UnescapeJinjaString(string s)
    {
        var sb = new StringBuilder(s.Length);
        for (int i = 0; i < s.Length; i++)
        {
            if (s[i] != '\\' || i + 1 == s.Length)
            {
                sb.Append(s[i]);
                continue;
            }
            char next = s[++i];
            sb.Append(next switch
            {
                'n' => "\n",
                't' => "\t",
                '\'' or '"' or '\\' => next.ToString(),
                _ => "\\" + next,
            });
        }
        return sb.ToString();
    }

    /// <summary>Collects the prompt text and which ranges of it the template (not a message) wrote.</summary>
    sealed class PromptBuilder
    {
        readonly StringBuilder text = new();
        public List<Range> Trusted { get; } = [];
        public string Text => text.ToString();

        public void Template(string s)
        {
            int start = text.Length;
            if (Trusted.Count > 0 && Trusted[^1].End.Value == start)
            {
                start = Trusted[^1].Start.Value;
                Trusted.RemoveAt(Trusted.Count - 1);
            }
            text.Append(s);
            Trusted.Add(new Range(start, text.Length));
        }

        public void Message(string s) => text.Append(s);
    }
}
