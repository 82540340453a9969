using Appliance.BlockDev.Images;

namespace Appliance.BlockDev.Nbd.Server;

/// <summary>
/// The images open for serving, shared by every connection to the same export name (reference counted). Sharing
/// one <see cref="IImage"/> per export is what makes NBD_FLAG_CAN_MULTI_CONN true for images whose caches are per
/// instance; for local files the kernel's page cache is shared anyway. One open per name at a time: connections that
/// ask while it opens wait for it, so a cluster image's lock is taken once and never released by a loser of a race.
/// </summary>
internal sealed class ExportTable(IImageCatalog catalog, bool readOnly)
{
    private readonly Dictionary<string, Entry> _open = new(StringComparer.Ordinal);
    private readonly Lock _lock = new();

    /// <summary>Resolves the name a client asked for: the empty name means the only image, if there is exactly one.</summary>
    public async ValueTask<string?> ResolveAsync(string requested, CancellationToken ct)
    {
        if (requested.Length > 0)
        {
            return requested;
        }
        var names = await catalog.ListNamesAsync(ct);
        return names.Count == 1 ? names[0] : null;
    }

    /// <summary>Opens (or shares) the image of an export: a lease, or none with the catalog's refusal (null reason:
    /// no such export).</summary>
    public async ValueTask<(ExportLease? Lease, string? Refusal)> AcquireAsync(string name, CancellationToken ct)
    {
        while (true)
        {
            Entry? entry;
            var opener = false;
            lock (_lock)
            {
                if (!_open.TryGetValue(name, out entry))
                {
                    entry = new Entry();
                    _open[name] = entry;
                    opener = true;
                }
                else if (entry.Closing)
                {
                    // Being closed (a cluster image gives its lock back): open anew only once that is done.
                }
                else if (entry.Image is not null)
                {
                    entry.References++;
                    return (new ExportLease(this, name, entry.Image), null);
                }
            }
            if (opener)
            {
                ImageOpenResult result;
                try
                {
                    // Not the connection's token: the open is shared by whoever waits for it.
                    result = await catalog.OpenAsync(name, readOnly, CancellationToken.None);
                }
                catch (Exception e)
                {
                    Fail(name, entry);
                    entry.Opened.TrySetException(e);
                    throw;
                }
                if (result.Image is null)
                {
                    Fail(name, entry);
                    entry.Opened.TrySetResult(result);
                    return (null, result.Refusal);
                }
                lock (_lock)
                {
                    entry.Image = result.Image;
                    entry.References++;
                }
                entry.Opened.TrySetResult(result);
                return (new ExportLease(this, name, result.Image), null);
            }
            if (entry.Closing)
            {
                await entry.Closed.Task.WaitAsync(ct);
                continue;
            }
            // Someone else is opening it: wait, then look again (it may have failed, or closed since).
            var other = await entry.Opened.Task.WaitAsync(ct);
            if (other.Image is null)
            {
                return (null, other.Refusal);
            }
        }
    }

    private void Fail(string name, Entry entry)
    {
        lock (_lock)
        {
            if (_open.TryGetValue(name, out var e) && e == entry)
            {
                _open.Remove(name);
            }
        }
    }

    public ValueTask<string?> DescribeAsync(string name, CancellationToken ct) => catalog.DescribeAsync(name, ct);

    public ValueTask<IReadOnlyList<string>> ListNamesAsync(CancellationToken ct) => catalog.ListNamesAsync(ct);

    public ValueTask<bool> ExistsAsync(string name, CancellationToken ct) => catalog.ExistsAsync(name, ct);

    /// <summary>How many exports are open now (for tests and stats).</summary>
    public int OpenCount
    {
        get
        {
            lock (_lock)
            {
                return _open.Values.Count(e => e.Image is not null && !e.Closing);
            }
        }
    }

    internal async ValueTask ReleaseAsync(string name)
    {
        IImage? close = null;
        Entry entry;
        lock (_lock)
        {
            entry = _open[name];
            if (--entry.References == 0)
            {
                entry.Closing = true;
                close = entry.Image;
            }
        }
        if (close is not null)
        {
            try
            {
                await close.DisposeAsync();
            }
            finally
            {
                lock (_lock)
                {
                    _open.Remove(name);
                }
                entry.Closed.TrySetResult();
            }
        }
    }

    private sealed class Entry
    {
        public readonly TaskCompletionSource<ImageOpenResult> Opened = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public readonly TaskCompletionSource Closed = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public IImage? Image { get; set; }

        public bool Closing { get; set; }

        public int References { get; set; }
    }
}

/// <summary>One connection's hold on an open export; disposing it releases the image when it is the last.</summary>
internal sealed class ExportLease(ExportTable table, string name, IImage image) : IAsyncDisposable
{
    private int _released;

    public string Name { get; } = name;

    public IImage Image { get; } = image;

    public ValueTask DisposeAsync() =>
        Interlocked.Exchange(ref _released, 1) == 0 ? table.ReleaseAsync(Name) : ValueTask.CompletedTask;
}
