using Appliance.Erasure.Kernels;

namespace Appliance.Erasure;

/// <summary>
/// Decode matrices by erasure pattern (which chunks are read, which are rebuilt), least recently used dropped past
/// a bound. A failed OSD makes one pattern repeat for every object of its PGs, so inverting once per pattern instead
/// of once per stripe is what makes degraded reads and recovery cheap. Thread-safe: one lock around a dictionary and
/// a list, held only to look up or insert (a miss builds its matrix outside the lock; two threads missing the same
/// pattern at once both build it, and the second insert is dropped).
/// </summary>
internal sealed class DecodeMatrixCache(int capacity)
{
    private readonly Dictionary<(ulong Sources, ulong Targets), LinkedListNode<Entry>> _map = [];
    private readonly LinkedList<Entry> _lru = new();
    private readonly Lock _lock = new();

    public int Count
    {
        get
        {
            lock (_lock)
            {
                return _map.Count;
            }
        }
    }

    public CodingMatrix GetOrAdd(ulong sources, ulong targets, Func<ulong, ulong, CodingMatrix> build)
    {
        var key = (sources, targets);
        lock (_lock)
        {
            if (_map.TryGetValue(key, out var node))
            {
                _lru.Remove(node);
                _lru.AddFirst(node);
                return node.Value.Matrix;
            }
        }
        var matrix = build(sources, targets);
        lock (_lock)
        {
            if (_map.TryGetValue(key, out var raced))
            {
                return raced.Value.Matrix;
            }
            _map[key] = _lru.AddFirst(new Entry(key, matrix));
            if (_map.Count > capacity)
            {
                var last = _lru.Last!;
                _lru.RemoveLast();
                _map.Remove(last.Value.Key);
            }
        }
        return matrix;
    }

    private sealed record Entry((ulong Sources, ulong Targets) Key, CodingMatrix Matrix);
}
