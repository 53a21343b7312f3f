namespace IlgpuLlm.Model.Formats;

/// <summary>
/// How the writers put a file on disk: into a temporary file beside the target, renamed over it
/// only once every byte is written and flushed, so an interrupted or failed write never leaves a
/// truncated model under the real name. Bytes written are reported as they go.
/// </summary>
internal static class FileOutput
{
    const int BufferBytes = 1 << 20;

    /// <summary>
    /// Writes <paramref name="path"/> through <paramref name="write"/>, which must produce exactly
    /// <paramref name="expectedLength"/> bytes. Progress is <paramref name="progressBase"/> plus the
    /// bytes of this file written so far.
    /// </summary>
    public static void Write(string path, long expectedLength, Action<Stream> write,
        IProgress<long>? progress, long progressBase, CancellationToken cancellation)
    {
        string fullPath = Path.GetFullPath(path);
        string? folder = Path.GetDirectoryName(fullPath);
        if (folder is not null)
            Directory.CreateDirectory(folder);
        string temporary = fullPath + ".partial";
        try
        {
            // Reserving the length up front (fallocate) makes a full disk fail now, not after gigabytes.
            using (var file = new FileStream(temporary, new FileStreamOptions
            {
                Mode = FileMode.Create,
                Access = FileAccess.Write,
                Share = FileShare.None,
                BufferSize = BufferBytes,
                Options = FileOptions.SequentialScan,
                PreallocationSize = expectedLength,
            }))
            {
                using var counting = new CountingStream(file, progress, progressBase, cancellation);
                write(counting);
                counting.Flush();
                if (counting.Written != expectedLength)
                    throw new InvalidOperationException(
                        $"{path}: wrote {counting.Written} bytes, but the layout planned {expectedLength} (a tensor source produced the wrong amount)");
                file.Flush(flushToDisk: false);
                counting.ReportFinal();
            }
            File.Move(temporary, fullPath, overwrite: true);
        }
        catch
        {
            TryDelete(temporary);
            throw;
        }
    }

    static void TryDelete(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // The original failure is the one worth reporting.
        }
    }

    /// <summary>Zero bytes that pad <paramref name="position"/> up to a multiple of <paramref name="alignment"/>.</summary>
    public static void Pad(Stream stream, long position, int alignment)
    {
        int padding = (int)(AlignUp(position, alignment) - position);
        if (padding > 0)
            stream.Write(new byte[padding]);
    }

    public static long AlignUp(long value, int alignment) => (value + alignment - 1) / alignment * alignment;

    /// <summary>A write-only pass-through that counts bytes, reports progress and honours cancellation.</summary>
    sealed class CountingStream(Stream inner, IProgress<long>? progress, long progressBase, CancellationToken cancellation) : Stream
    {
        const long ReportEvery = 4 << 20;
        long _lastReported = -1;

        public long Written { get; private set; }

        public override bool CanRead => false;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => Written;
        public override long Position { get => Written; set => throw new NotSupportedException(); }

        public override void Write(ReadOnlySpan<byte> buffer)
        {
            cancellation.ThrowIfCancellationRequested();
            inner.Write(buffer);
            Written += buffer.Length;
            if (progress is not null && Written - _lastReported >= ReportEvery)
            {
                _lastReported = Written;
                progress.Report(progressBase + Written);
            }
        }

        public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

        public override void WriteByte(byte value) => Write([value]);

        public void ReportFinal() => progress?.Report(progressBase + Written);

        public override void Flush() => inner.Flush();
        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
    }
}
