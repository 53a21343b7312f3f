using IlgpuLlm.Cli.Commands;
using IlgpuLlm.Runtime.Generation;
using IlgpuLlm.Tests.EndToEnd;
using IlgpuLlm.Tests.Support;
using Microsoft.Extensions.AI;
using EngineMessage = IlgpuLlm.Model.Tokenizers.ChatMessage;

namespace IlgpuLlm.Tests.Library;

/// <summary>
/// The scheduler's other callers on stories260K: a conversation keeps its history in the KV cache
/// and replies as a fresh request over the whole conversation would; the chat REPL (/clear, /exit,
/// Ctrl-C through its interrupt); the IChatClient, alone and under ChatClientBuilder middleware;
/// concurrent calls sharing steps.
/// </summary>
[Collection(BackendCollection.Name)]
public class ConversationTests
{
    static readonly string Stories = References.Stories("stories260K.bin");

    static LanguageModel Load(int slots = 1) =>
        LanguageModel.Load(Stories, new LanguageModelOptions { Threads = 2, Slots = slots });

    static GenerationOptions Greedy(int tokens) => new() { MaxNewTokens = tokens, Sampling = SamplerSettings.Greedy };

    static async Task<(string Text, GenerationPiece Last)> Collect(IAsyncEnumerable<GenerationPiece> pieces)
    {
        var text = new System.Text.StringBuilder();
        GenerationPiece? last = null;
        await foreach (var piece in pieces)
        {
            text.Append(piece.Text);
            last = piece;
        }
        return (text.ToString(), last!);
    }

    [Fact]
    public async Task A_conversation_prefills_only_what_a_turn_adds_and_replies_as_a_fresh_request_would()
    {
        using var model = Load(slots: 2);
        using var conversation = model.StartConversation("You are kind.");
        var (first, firstLast) = await Collect(conversation.SendAsync("Tell me a story", Greedy(12)));
        Assert.Equal(0, firstLast.Usage!.ReusedPromptTokens);
        var (second, secondLast) = await Collect(conversation.SendAsync("And then?", Greedy(12)));

        // Turn 2 kept at least turn 1's whole prompt in the cache.
        int firstPrompt = firstLast.Usage.PromptTokens;
        Assert.InRange(secondLast.Usage!.ReusedPromptTokens, firstPrompt, secondLast.Usage.PromptTokens - 1);
        Assert.Equal(5, conversation.Messages.Count);
        Assert.Equal(first, conversation.Messages[2].Content);
        Assert.Contains("[INST]", conversation.RenderedPrompt);

        EngineMessage[] whole = [EngineMessage.System("You are kind."), EngineMessage.User("Tell me a story"),
            EngineMessage.Assistant(first), EngineMessage.User("And then?")];
        var (fresh, freshLast) = await Collect(model.GenerateAsync(Prompt.FromMessages(whole), Greedy(12)));
        Assert.Equal(fresh, second);
        Assert.Equal(freshLast.Usage!.PromptTokens, secondLast.Usage.PromptTokens);

        // A request that finds no free slot takes the idle conversation's; its next turn prefills everything again.
        Assert.Equal(1, model.Status.KeptSlots);
        var (third, _) = await Collect(conversation.SendAsync("Why?", Greedy(4)));
        using (var other = model.StartConversation())
        {
            await Collect(other.SendAsync("Hi", Greedy(2)));
            Assert.Equal(2, model.Status.KeptSlots);
            model.Generate(["Once upon a time"], Greedy(2));
            Assert.Equal(1, model.Status.KeptSlots);
        }
        var (fourth, fourthLast) = await Collect(conversation.SendAsync("Really?", Greedy(4)));
        Assert.Equal(0, fourthLast.Usage!.ReusedPromptTokens);

        // Cleared, it starts over: the same first reply, nothing reused.
        conversation.Clear();
        var (again, againLast) = await Collect(conversation.SendAsync("Tell me a story", Greedy(12)));
        Assert.Equal(first, again);
        Assert.Equal(0, againLast.Usage!.ReusedPromptTokens);
    }

    [Fact]
    public async Task A_cancelled_turn_keeps_the_partial_reply_and_the_conversation_goes_on()
    {
        using var model = Load();
        using var conversation = model.StartConversation();
        using var cancellation = new CancellationTokenSource();
        int pieces = 0;
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (var _ in conversation.SendAsync("Tell me a story", Greedy(100), cancellation.Token))
                if (++pieces == 3)
                    cancellation.Cancel();
        });
        Assert.Equal(2, conversation.Messages.Count);
        var (next, last) = await Collect(conversation.SendAsync("More", Greedy(5)));
        Assert.Equal(5, last.Usage!.GeneratedTokens);
        Assert.True(last.Usage.ReusedPromptTokens > 0);
    }

    /// <summary>A writer that calls back on the first text it is given (a user pressing Ctrl-C as the reply appears).</summary>
    sealed class InterruptingWriter(Action onText) : StringWriter
    {
        bool fired;

        public override void Write(string? value)
        {
            base.Write(value);
            if (!fired && !string.IsNullOrEmpty(value) && value != "> ")
            {
                fired = true;
                onText();
            }
        }
    }

    [Fact]
    public async Task The_chat_repl_streams_replies_clears_stops_a_reply_on_interrupt_and_exits()
    {
        using var model = Load();
        var repl = new ChatRepl(model, Greedy(12), systemPrompt: null, verbosePrompt: true);
        using var output = new StringWriter();
        using var error = new StringWriter();
        int code = await repl.RunAsync(new StringReader("Tell me a story\n/clear\nTell me a story\n\n/exit\nnever read\n"), output, error, CancellationToken.None);
        Assert.Equal(0, code);
        var reply = model.Generate([Prompt.FromMessages([EngineMessage.User("Tell me a story")])], Greedy(12))[0].Text;
        Assert.Equal(2, CountOf(output.ToString(), reply));
        Assert.Contains("(conversation cleared)", error.ToString());
        Assert.Contains("[INST] Tell me a story [/INST]", error.ToString());
        Assert.Contains("already in the cache", error.ToString());

        // Ctrl-C while a reply streams stops that reply; the REPL goes on to the next line.
        ChatRepl? interrupted = null;
        using var interruptedOutput = new InterruptingWriter(() => Assert.True(interrupted!.Interrupt()));
        using var interruptedError = new StringWriter();
        interrupted = new ChatRepl(model, Greedy(200), null, verbosePrompt: false);
        Assert.False(interrupted.Interrupt()); // no reply in progress: Ctrl-C does what it does elsewhere
        await interrupted.RunAsync(new StringReader("Tell me a story\nHi\n"), interruptedOutput, interruptedError, CancellationToken.None);
        Assert.Equal(1, CountOf(interruptedError.ToString(), "(reply stopped)"));
    }

    static int CountOf(string text, string part)
    {
        int count = 0;
        for (int at = text.IndexOf(part, StringComparison.Ordinal); at >= 0; at = text.IndexOf(part, at + part.Length, StringComparison.Ordinal))
            count++;
        return count;
    }

    [Fact]
    public async Task The_chat_client_maps_options_streams_counts_usage_and_composes_with_middleware()
    {
        using var model = Load();
        IChatClient inner = model.AsChatClient(Greedy(16));
        int calls = 0;
        using var client = new ChatClientBuilder(inner)
            .Use(async (messages, options, next, cancellationToken) =>
            {
                calls++;
                await next(messages, options, cancellationToken);
            })
            .Build();
        Microsoft.Extensions.AI.ChatMessage[] conversation = [new(ChatRole.System, "You are kind."), new(ChatRole.User, "Tell me a story")];
        var response = await client.GetResponseAsync(conversation);
        var expected = model.Generate([Prompt.FromMessages([EngineMessage.System("You are kind."), EngineMessage.User("Tell me a story")])], Greedy(16))[0];
        Assert.Equal(expected.Text, response.Text);
        Assert.Equal(expected.Usage.PromptTokens, response.Usage!.InputTokenCount);
        Assert.Equal(expected.Tokens.Count, response.Usage.OutputTokenCount);
        Assert.Equal(expected.FinishReason == FinishReason.Stop ? ChatFinishReason.Stop : ChatFinishReason.Length, response.FinishReason);

        var streamed = new System.Text.StringBuilder();
        UsageDetails? usage = null;
        await foreach (var update in client.GetStreamingResponseAsync(conversation))
        {
            streamed.Append(update.Text);
            usage ??= update.Contents.OfType<UsageContent>().FirstOrDefault()?.Details;
        }
        Assert.Equal(expected.Text, streamed.ToString());
        Assert.Equal(response.Usage.TotalTokenCount, usage!.TotalTokenCount);
        Assert.Equal(2, calls);

        // Seed, temperature, top-p, top-k, the token budget and stop sequences reach the sampler.
        var options = new ChatOptions { Seed = 5, Temperature = 0.9f, TopP = 0.8f, TopK = 20, MaxOutputTokens = 10, StopSequences = ["zzz"] };
        var sampled = await client.GetResponseAsync("Tell me a story", options);
        var reference = model.Generate([Prompt.FromMessages([EngineMessage.User("Tell me a story")])], new GenerationOptions
        {
            MaxNewTokens = 10,
            StopStrings = ["zzz"],
            Sampling = SamplerSettings.Greedy with { Temperature = 0.9f, TopP = 0.8f, TopK = 20, Seed = 5 },
        })[0];
        Assert.Equal(reference.Text, sampled.Text);
        Assert.Equal(10, sampled.Usage!.OutputTokenCount);

        await Assert.ThrowsAsync<NotSupportedException>(() => client.GetResponseAsync("Hi", new ChatOptions { FrequencyPenalty = 0.5f }));
        using var cancellation = new CancellationTokenSource();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (var _ in client.GetStreamingResponseAsync("Tell me a story", new ChatOptions { MaxOutputTokens = 200 }, cancellation.Token))
                cancellation.Cancel();
        });
        // The shared-function middleware streams from a task of its own, which the cancellation stops a moment later.
        await IlgpuLlm.Tests.Server.ServerFixture.Until(() => model.Status.Running == 0, "the cancelled request left the batch");
        Assert.Equal("ilgpullm", client.GetService<ChatClientMetadata>()!.ProviderName);
    }

    [Fact]
    public async Task Concurrent_calls_share_steps_and_each_gets_what_it_gets_alone()
    {
        using var model = Load(slots: 3);
        string[] prompts = ["Once upon a time", "The cat", "Lily went to the park"];
        var alone = new List<string>();
        foreach (var prompt in prompts)
            alone.Add((await Collect(model.GenerateAsync(prompt, Greedy(150)))).Text);
        int mostRunning = 0;
        var together = prompts.Select(prompt => Task.Run(async () =>
        {
            var text = new System.Text.StringBuilder();
            await foreach (var piece in model.GenerateAsync(prompt, Greedy(150)))
            {
                text.Append(piece.Text);
                int running = model.Status.Running;
                int seen;
                do
                    seen = Volatile.Read(ref mostRunning);
                while (running > seen && Interlocked.CompareExchange(ref mostRunning, running, seen) != seen);
            }
            return text.ToString();
        })).ToArray();
        Assert.Equal(alone, await Task.WhenAll(together));
        Assert.True(mostRunning >= 2, $"at most {mostRunning} request ran at once");
    }
}
