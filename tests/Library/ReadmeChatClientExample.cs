using IlgpuLlm;
using IlgpuLlm.Runtime.Generation;
using Microsoft.Extensions.AI;

public static class Assistant
{
    public static async Task<string> AnswerAsync(LanguageModel model, string question, CancellationToken cancellationToken = default)
    {
        IChatClient client = new ChatClientBuilder(model.AsChatClient())
            .Use(async (messages, options, next, token) =>
            {
                Console.Error.WriteLine($"asking with {messages.Count()} messages");
                await next(messages, options, token);
            })
            .Build();
        var options = new ChatOptions { MaxOutputTokens = 40, Temperature = 0.7f, Seed = 42 };
        ChatResponse response = await client.GetResponseAsync(
            [new(ChatRole.System, "You tell short stories."), new(ChatRole.User, question)], options, cancellationToken);
        return $"{response.Text} ({response.Usage?.OutputTokenCount} tokens)";
    }
}
