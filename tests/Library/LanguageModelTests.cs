using IlgpuLlm.Model.Tokenizers;
using IlgpuLlm.Runtime.Generation;
using IlgpuLlm.Tests.EndToEnd;
using IlgpuLlm.Tests.Support;

namespace IlgpuLlm.Tests.Library;

/// <summary>
/// The library entry point on stories260K: streamed and batched text equal to run.c's, stop strings
/// cut before they start (held back while they might), the context checked in one place,
/// cancellation between steps with the model usable afterwards, and random streams keyed by the caller.
/// </summary>
[Collection(BackendCollection.Name)]
public class LanguageModelTests
{
    static readonly string Stories = References.Stories("stories260K.bin");
    const string Once = "Once upon a time";

    static LanguageModel Load(int slots = 1, int context = 0) =>
        LanguageModel.Load(Stories, new LanguageModelOptions { Threads = 2, Slots = slots, ContextLength = context });

    static GenerationOptions Greedy(int tokens, params string[] stops) =>
        new() { MaxNewTokens = tokens, Sampling = SamplerSettings.Greedy, StopStrings = stops };

    static readonly GenerationOptions Sampled = new()
    {
        MaxNewTokens = 16,
        Sampling = new SamplerSettings { Temperature = 0.9f, Seed = 11 },
    };

    static string RunC(string name) => File.ReadAllText(References.Stories("expected", name)).TrimEnd('\n');

    static async Task<List<GenerationPiece>> Collect(IAsyncEnumerable<GenerationPiece> pieces)
    {
        var list = new List<GenerationPiece>();
        await foreach (var piece in pieces)
            list.Add(piece);
        return list;
    }

    static string TextOf(IEnumerable<GenerationPiece> pieces) => string.Concat(pieces.Select(p => p.Text));

    [Fact]
    public async Task Streams_run_c_s_text_a_piece_per_token_and_ends_with_the_usage()
    {
        using var model = Load();
        var pieces = await Collect(model.GenerateAsync(Once, Greedy(60)));
        Assert.Equal(RunC("expected_greedy_n64_prompt_Once_upon_a_time.txt"), Once + TextOf(pieces));
        Assert.Equal(61, pieces.Count);
        Assert.All(pieces[..^1], p => Assert.True(p.Token.HasValue && p.FinishReason == null && p.Usage == null));
        var last = pieces[^1];
        Assert.Null(last.Token);
        Assert.Equal(FinishReason.Length, last.FinishReason);
        Assert.Equal((5, 60), (last.Usage!.PromptTokens, last.Usage.GeneratedTokens));
        Assert.Equal(5, last.Usage.Run.PromptTokens);

        // An empty prompt starts from BOS, as run.c does without one.
        var story = await Collect(model.GenerateAsync("", Greedy(200)));
        Assert.Equal(RunC("expected_greedy_n200_noprompt.txt"), TextOf(story));
    }

    [Fact]
    public async Task Batch_results_come_in_input_order_and_equal_each_prompt_streamed_alone()
    {
        string[] prompts = [Once, "The cat", "Lily went to the park and saw a big red ball", "Tom"];
        using var model = Load(slots: 3);
        var results = model.Generate(prompts, Sampled);
        Assert.Equal(prompts.Length, results.Count);
        for (int i = 0; i < prompts.Length; i++)
        {
            // A prompt's random stream is its index in the batch unless the caller keys it.
            var alone = await Collect(model.GenerateAsync(Prompt.FromText(prompts[i]) with { Sequence = i }, Sampled));
            Assert.Equal(alone[..^1].Select(p => p.Token!.Value), results[i].Tokens);
            Assert.Equal(TextOf(alone), results[i].Text);
            Assert.Equal(alone[^1].FinishReason, results[i].FinishReason);
            Assert.Null(results[i].Error);
            Assert.Equal(model.Encode(prompts[i]).Length, results[i].Usage.PromptTokens);
        }

        // Keyed by the caller, a prompt draws the same tokens at any position of any batch.
        var keyed = model.Generate([Prompt.FromText("Tom"), Prompt.FromText(Once) with { Sequence = 7 }], Sampled);
        var keyedAlone = await Collect(model.GenerateAsync(Prompt.FromText(Once) with { Sequence = 7 }, Sampled));
        Assert.Equal(keyedAlone[..^1].Select(p => p.Token!.Value), keyed[1].Tokens);
        Assert.NotEqual(results[0].Tokens, keyed[1].Tokens);
    }

    [Fact]
    public async Task A_stop_string_split_across_tokens_ends_the_text_before_it()
    {
        // ", there was a little girl named Lily": " g", "ir", "l", " named" are four tokens.
        using var model = Load();
        var pieces = await Collect(model.GenerateAsync(Once, Greedy(30, "girl named", "never seen")));
        Assert.Equal(", there was a little ", TextOf(pieces));
        Assert.Equal(FinishReason.Stop, pieces[^1].FinishReason);
        Assert.Equal([432, 383, 286, 261, 376, 298, 315, 421, 395], pieces[..^1].Select(p => p.Token!.Value));
        // From " g" on, each piece could begin the stop string, so none of it is shown.
        Assert.Equal([" ", "", "", "", ""], pieces[5..].Select(p => p.Text));

        // The text up to a stop string keeps the space before it, though that space came in the same token.
        var batch = model.Generate([Once], Greedy(30, "Lily"));
        Assert.Equal(", there was a little girl named ", batch[0].Text);
        Assert.Equal(FinishReason.Stop, batch[0].FinishReason);
        Assert.Equal(317, batch[0].Tokens[^1]); // " Lily", the token that completed it, is generated all the same
    }

    [Fact]
    public async Task Text_that_begins_a_stop_string_is_released_when_the_text_diverges()
    {
        using var model = Load();
        var plain = await Collect(model.GenerateAsync(Once, Greedy(14)));
        var held = await Collect(model.GenerateAsync(Once, Greedy(14, "girl!")));
        Assert.Equal(TextOf(plain), TextOf(held));
        Assert.Equal(FinishReason.Length, held[^1].FinishReason);
        // " g" releases the space and holds "g"; "ir" and "l" hold "girl"; " named" shows it is not "girl!".
        Assert.Equal([" g", "ir", "l", " named"], plain[5..9].Select(p => p.Text));
        Assert.Equal([" ", "", "", "girl named"], held[5..9].Select(p => p.Text));

        // Held when generation ends, the text comes out with the last piece.
        var end = await Collect(model.GenerateAsync(Once, Greedy(8, "girl!")));
        Assert.Equal(", there was a little ", TextOf(end[..^1]));
        Assert.Equal("girl", end[^1].Text);
        Assert.Equal(FinishReason.Length, end[^1].FinishReason);
    }

    [Fact]
    public void Empty_stop_strings_and_bad_options_are_rejected_before_any_work()
    {
        using var model = Load();
        Assert.Contains("stop string 0 is empty", Assert.Throws<ArgumentException>(() => model.GenerateAsync(Once, Greedy(4, ""))).Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => model.Generate([Once], new GenerationOptions { MaxNewTokens = -1 }));
        Assert.Contains("top-p 2", Assert.Throws<ArgumentException>(() =>
            model.GenerateAsync(Once, new GenerationOptions { Sampling = new SamplerSettings { TopP = 2 } })).Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => LanguageModel.Load(Stories, new LanguageModelOptions { Slots = 0 }));
        Assert.Contains("vicuna", Assert.Throws<ArgumentException>(() => LanguageModel.Load(Stories, new LanguageModelOptions { ChatTemplate = "vicuna" })).Message);
        Assert.Contains("outside the vocabulary of 512", Assert.Throws<ArgumentException>(() => model.GenerateAsync(Prompt.FromTokens([1, 512]))).Message);
    }

    [Fact]
    public async Task The_context_is_checked_once_for_prompts_and_ends_generation_with_length()
    {
        using var model = Load(context: 8);
        Assert.Equal(8, model.ContextLength);
        var single = Assert.Throws<PromptTooLongException>(() => model.GenerateAsync(Once + ", there was a little girl"));
        Assert.Equal((null, 13, 8), (single.Index, single.Length, single.Limit));
        Assert.StartsWith("the prompt is 13 tokens long; the context holds 8 positions", single.Message);
        var batch = Assert.Throws<PromptTooLongException>(() => model.Generate(["Once", Once + ", there was a little girl"]));
        Assert.Equal(1, batch.Index);
        Assert.StartsWith("prompt 1 is 13 tokens long", batch.Message);

        // 5 prompt positions, 4 generated tokens fill the 8 (the last one drawn is never fed).
        var pieces = await Collect(model.GenerateAsync(Once, Greedy(20)));
        Assert.Equal(", there was a", TextOf(pieces));
        Assert.Equal(FinishReason.Length, pieces[^1].FinishReason);
        Assert.Equal("sequence 0 reached the context limit of 8 positions", pieces[^1].Message);
    }

    [Fact]
    public async Task A_sequence_that_cannot_continue_is_an_error_streamed_and_a_result_in_a_batch()
    {
        using var temp = new TempFolder();
        string path = temp.File("huge.gguf");
        // The tiny model's vocabulary (t0 … t15) read as SentencePiece pieces, so that it loads with a tokenizer.
        File.WriteAllBytes(path, NonFiniteTests.HugeFeedForwardModel().String("tokenizer.ggml.model", "llama").Build());
        using var model = LanguageModel.Load(path, new LanguageModelOptions { Threads = 2, Slots = 2 });
        var options = Greedy(4);
        var error = await Assert.ThrowsAsync<GenerationException>(() => Collect(model.GenerateAsync(Prompt.FromTokens([1, 5, 6]), options)));
        Assert.Contains("layer 0 feed-forward", error.Message);
        var results = model.Generate([Prompt.FromTokens([1, 5, 6]), Prompt.FromTokens([1, 7])], options);
        Assert.All(results, r => Assert.Equal(FinishReason.Error, r.FinishReason));
        Assert.Contains("layer 0 feed-forward", results[0].Error);
        Assert.Empty(results[0].Tokens);
    }

    [Fact]
    public async Task Cancelling_stops_between_steps_and_leaves_the_model_usable()
    {
        using var model = Load();
        using var cancellation = new CancellationTokenSource();
        var seen = new List<GenerationPiece>();
        var error = await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (var piece in model.GenerateAsync(Once, Greedy(200), cancellation.Token))
            {
                seen.Add(piece);
                if (seen.Count == 3)
                    cancellation.Cancel();
            }
        });
        Assert.Equal(cancellation.Token, error.CancellationToken);
        Assert.Equal(3, seen.Count);

        // Cancelled before it starts: nothing is generated.
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => Collect(model.GenerateAsync(Once, Greedy(5), cancellation.Token)));
        Assert.ThrowsAny<OperationCanceledException>(() => model.Generate([Once], Greedy(5), cancellation.Token));

        // A reader that stops early frees the model too.
        await foreach (var piece in model.GenerateAsync(Once, Greedy(200)))
            break;

        var pieces = await Collect(model.GenerateAsync(Once, Greedy(60)));
        Assert.Equal(RunC("expected_greedy_n64_prompt_Once_upon_a_time.txt"), Once + TextOf(pieces));
    }

    [Fact]
    public async Task Concurrent_calls_take_turns()
    {
        using var model = Load();
        var expected = RunC("expected_greedy_n64_prompt_Once_upon_a_time.txt");
        var streams = Enumerable.Range(0, 3).Select(_ => Task.Run(() => Collect(model.GenerateAsync(Once, Greedy(60))))).ToArray();
        var batch = Task.Run(() => model.Generate([Once, Once], Greedy(60)));
        foreach (var stream in streams)
            Assert.Equal(expected, Once + TextOf(await stream));
        Assert.All(await batch, r => Assert.Equal(expected, Once + r.Text));
    }

    [Fact]
    public void Chat_prompts_use_the_template_and_stop_at_its_end_of_turn()
    {
        using var model = Load();
        // stories260K's vocabulary has BOS and EOS only: its family's template is Llama 2's [INST] format.
        Assert.Equal(ChatFormat.Llama2, model.ChatTemplate.Format);
        ChatMessage[] messages = [ChatMessage.System("You are kind."), ChatMessage.User("Tell me a story")];
        Assert.Equal(ChatTemplate.Create(ChatFormat.Llama2).Encode(model.Tokenizer, messages, addGenerationPrompt: true),
            model.Encode(Prompt.FromMessages(messages)));
        var reply = model.Generate([Prompt.FromMessages(messages)], Greedy(8))[0];
        Assert.Null(reply.Error);
        Assert.Equal(model.Encode(Prompt.FromMessages(messages)).Length, reply.Usage.PromptTokens);

        // The end-of-turn id ends a reply even where the model's stop ids lack it.
        var continuation = new Continuation(model.Tokenizer, [1], [], endOfTurn: 400);
        continuation.Append(401);
        Assert.False(continuation.Stopped);
        continuation.Append(400);
        Assert.True(continuation.Stopped);
    }

    [Fact]
    public async Task The_demo_model_runs_without_files_and_describes_itself()
    {
        using var model = LanguageModel.LoadDemo(new LanguageModelOptions { Threads = 2 });
        Assert.Contains("Llama", model.ToString());
        Assert.Contains("simd-cpu", model.Device);
        var pieces = await Collect(model.GenerateAsync("Hello", new GenerationOptions { MaxNewTokens = 4, Sampling = SamplerSettings.Greedy }));
        Assert.NotNull(pieces[^1].FinishReason);
        model.Dispose();
        Assert.Throws<ObjectDisposedException>(() => model.GenerateAsync("Hello"));
    }
}
