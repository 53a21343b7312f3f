using System.CommandLine;
using IlgpuLlm.Model;
using IlgpuLlm.Model.Tokenizers;

namespace IlgpuLlm.Cli.Commands;

/// <summary><c>tokenize</c>: the ids of a text, as the model's original tokenizer produces them.</summary>
public static class TokenizeCommand
{
    public static Command Create()
    {
        var model = new Option<string?>("--model", "-m")
        {
            Description = "A model (GGUF, Hugging Face folder, llama2.c checkpoint) or a bare tokenizer (tokenizer.model, tokenizer.json, a folder with vocab.json + merges.txt, tokenizer.bin, a vocabulary-only GGUF); default: the built-in stories260K",
        };
        var text = new Option<string>("--text") { Description = "The text to tokenize", Required = true };
        var special = new Option<bool>("--special") { Description = "Match special tokens written in the text (e.g. <|eot_id|>)" };
        var bos = new Option<bool>("--bos") { Description = "Start with the BOS token" };
        var command = new Command("tokenize", "Print the token ids of a text, separated by spaces");
        foreach (var option in new Option[] { model, text, special, bos })
            command.Options.Add(option);
        command.SetAction(parse =>
        {
            ITokenizer tokenizer;
            if (parse.GetValue(model) is string path)
                tokenizer = ModelLoader.OpenTokenizer(PathArguments.Input("--model", path, folderAllowed: true));
            else
            {
                Console.Error.WriteLine(DefaultModel.Note);
                using var checkpoint = DefaultModel.Open();
                tokenizer = TokenizerFactory.FromGguf(checkpoint.Gguf!);
            }
            var ids = tokenizer.Encode(parse.GetValue(text)!, parse.GetValue(bos), parse.GetValue(special));
            Console.Out.WriteLine(string.Join(' ', ids));
            return 0;
        });
        return command;
    }
}
