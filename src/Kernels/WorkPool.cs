namespace IlgpuLlm.Kernels;

/// <summary>
/// Work space for the threads of one parallel call (<see cref="CpuWorkers.For"/>): each chunk takes
/// an item and gives it back when done, so at most one item per concurrent thread is in use.
/// <see cref="Reserve"/> makes an item for every thread that may take part before the call and the
/// caller sizes them all, so what a step allocates depends on the shapes alone, never on how many
/// threads happened to run chunks at once (the step budgets count allocations).
/// </summary>
public sealed class WorkPool<T> where T : class, new()
{
    readonly List<T> idle = [];

    /// <summary>
    /// Makes sure <paramref name="threads"/> items exist; the caller then sizes each of them
    /// (<see cref="Count"/>, the indexer) before the call, from the calling thread.
    /// </summary>
    public void Reserve(int threads)
    {
        lock (idle)
            while (idle.Count < threads)
                idle.Add(new T());
    }

    /// <summary>Items in the pool (between calls: all of them).</summary>
    public int Count => idle.Count;

    public T this[int index] => idle[index];

    /// <summary>An item for one chunk of the call; a new one only when more threads run than were reserved.</summary>
    public T Take()
    {
        lock (idle)
        {
            if (idle.Count == 0)
                return new T();
            var item = idle[^1];
            idle.RemoveAt(idle.Count - 1);
            return item;
        }
    }

    public void Return(T item)
    {
        lock (idle)
            idle.Add(item);
    }
}
