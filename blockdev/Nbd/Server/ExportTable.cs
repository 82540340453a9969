using Appliance.BlockDev.Images;

namespace Appliance.BlockDev.Nbd.Server;

/// <summary>
/// The images open for serving, shared by every connection to the same export name (reference counted). Sharing
/// one <see cref="IImage"/> per export is what makes NBD_FLAG_CAN_MULTI_CONN true for images whose caches are per
/// instance; for local files the kernel's page cache is shared anyway.
/// </summary>
internal sealed class ExportTable(IImageCatalog catalog, bool readOnly)
{
    private readonly Dictionary<string, Entry> _open = new(StringComparer.Ordinal);
    private readonly Lock _lock = new();

    /// <summary>Resolves the name a client asked for: the empty name means the only image, if there is exactly one.</summary>
    public string? Resolve(string requested)
    {
        if (requested.Length > 0)
        {
            return requested;
        }
        var names = catalog.ListNames();
        return names.Count == 1 ? names[0] : null;
    }

    /// <summary>Opens (or shares) the image of an export; null when there is none by that name.</summary>
    public ExportLease? Acquire(string name)
    {
        lock (_lock)
        {
            if (_open.TryGetValue(name, out var entry))
            {
                entry.References++;
                return new ExportLease(this, name, entry.Image);
            }
        }
        // Opened outside the lock (it does I/O); if another connection won the race, ours is closed again.
        var image = catalog.TryOpen(name, readOnly);
        if (image is null)
        {
            return null;
        }
        IImage? loser = null;
        ExportLease lease;
        lock (_lock)
        {
            if (_open.TryGetValue(name, out var entry))
            {
                entry.References++;
                loser = image;
                lease = new ExportLease(this, name, entry.Image);
            }
            else
            {
                _open[name] = new Entry(image) { References = 1 };
                lease = new ExportLease(this, name, image);
            }
        }
        loser?.DisposeAsync().AsTask().GetAwaiter().GetResult();
        return lease;
    }

    public string? Describe(string name) => catalog.Describe(name);

    public IReadOnlyList<string> ListNames() => catalog.ListNames();

    /// <summary>How many exports are open now (for tests and stats).</summary>
    public int OpenCount
    {
        get
        {
            lock (_lock)
            {
                return _open.Count;
            }
        }
    }

    internal async ValueTask ReleaseAsync(string name)
    {
        IImage? close = null;
        lock (_lock)
        {
            var entry = _open[name];
            if (--entry.References == 0)
            {
                _open.Remove(name);
                close = entry.Image;
            }
        }
        if (close is not null)
        {
            await close.DisposeAsync();
        }
    }

    private sealed class Entry(IImage image)
    {
        public IImage Image { get; } = image;

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
