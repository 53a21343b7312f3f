using System.Runtime.CompilerServices;

// The tokenizer tests reach internal pieces directly: both BPE merge strategies, the NFC tables.
[assembly: InternalsVisibleTo("IlgpuLlm.Tests")]
