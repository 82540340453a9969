namespace Appliance.Osd.Pg;

/// <summary>FIFO async locks by key, created on first use and dropped when nobody holds or waits for them (the
/// per-object ordering of a PG: requests on one object run one at a time, in arrival order).</summary>
public sealed class KeyedLocks<TKey> where TKey : notnull
{
    private sealed class Entry
    {
        public readonly SemaphoreSlim Gate = new(1, 1);
        public int Users;
    }

    private readonly Dictionary<TKey, Entry> _entries = [];

    public int Count
    {
        get
        {
            lock (_entries)
            {
                return _entries.Count;
            }
        }
    }

    public async ValueTask<IDisposable> LockAsync(TKey key, CancellationToken ct)
    {
        Entry e;
        lock (_entries)
        {
            if (!_entries.TryGetValue(key, out e!))
            {
                e = new Entry();
                _entries[key] = e;
            }
            e.Users++;
        }
        try
        {
            await e.Gate.WaitAsync(ct);
        }
        catch
        {
            Release(key, e, held: false);
            throw;
        }
        return new Holder(this, key, e);
    }

    private void Release(TKey key, Entry e, bool held)
    {
        if (held)
        {
            e.Gate.Release();
        }
        lock (_entries)
        {
            if (--e.Users == 0)
            {
                _entries.Remove(key);
            }
        }
    }

    private sealed class Holder(KeyedLocks<TKey> owner, TKey key, Entry e) : IDisposable
    {
        private int _done;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _done, 1) == 0)
            {
                owner.Release(key, e, held: true);
            }
        }
    }
}
