using Appliance.Client;

namespace Appliance.Fs.Cluster;

/// <summary>
/// A file's data in the data pool: stripe k of inode i is object "FS.d.i.k" (i and k in hex), holding bytes
/// [k * StripeSize, (k + 1) * StripeSize). Objects are placed by their own names, so a file's stripes spread over
/// the pool. A missing object or a short one reads as zeros (holes). Every call has the deadline of its client.
/// </summary>
public sealed class DataStriper(IoContext pool, string fsName, int stripeSize = DataStriper.DefaultStripe)
{
    public const int DefaultStripe = 4 << 20;

    public int StripeSize { get; } = stripeSize;

    public string ObjectName(ulong ino, long stripe) => $"{fsName}.d.{ino:x16}.{stripe:x8}";

    private IEnumerable<(long Stripe, int Offset, int Length, int At)> Pieces(long offset, int length)
    {
        var at = 0;
        while (at < length)
        {
            var pos = offset + at;
            var stripe = pos / StripeSize;
            var inStripe = (int)(pos % StripeSize);
            var n = Math.Min(length - at, StripeSize - inStripe);
            yield return (stripe, inStripe, n, at);
            at += n;
        }
    }

    /// <summary>Fills <paramref name="destination"/> from <paramref name="offset"/> (holes as zeros).</summary>
    public async Task ReadAsync(ulong ino, long offset, Memory<byte> destination, CancellationToken ct)
    {
        await Task.WhenAll(Pieces(offset, destination.Length).Select(async p =>
        {
            var target = destination.Slice(p.At, p.Length);
            ReadOnlyMemory<byte> got;
            try
            {
                got = await pool.ReadAsync(ObjectName(ino, p.Stripe), (ulong)p.Offset, (ulong)p.Length, ct);
            }
            catch (ObjectNotFoundException)
            {
                got = default;
            }
            got.CopyTo(target);
            target.Span[got.Length..].Clear();
        }));
    }

    public Task WriteAsync(ulong ino, long offset, ReadOnlyMemory<byte> data, CancellationToken ct) =>
        Task.WhenAll(Pieces(offset, data.Length).Select(p => pool.WriteAsync(ObjectName(ino, p.Stripe), (ulong)p.Offset, data.Slice(p.At, p.Length), ct)));

    /// <summary>Zeros [offset, offset + length) (punch hole).</summary>
    public Task ZeroAsync(ulong ino, long offset, long length, CancellationToken ct)
    {
        var tasks = new List<Task>();
        for (var pos = offset; pos < offset + length;)
        {
            var stripe = pos / StripeSize;
            var inStripe = pos % StripeSize;
            var n = Math.Min(offset + length - pos, StripeSize - inStripe);
            tasks.Add(pool.ZeroAsync(ObjectName(ino, stripe), (ulong)inStripe, (ulong)n, ct));
            pos += n;
        }
        return Task.WhenAll(tasks);
    }

    /// <summary>Cuts a file that was up to <paramref name="oldSize"/> long down to <paramref name="newSize"/>:
    /// whole stripes past it removed, the stripe it falls in truncated (so a later extension reads zeros there).</summary>
    public Task TruncateAsync(ulong ino, ulong oldSize, ulong newSize, CancellationToken ct)
    {
        if (newSize >= oldSize)
        {
            return Task.CompletedTask;
        }
        var tasks = new List<Task>();
        var first = (long)(newSize / (ulong)StripeSize);
        var last = (long)((oldSize - 1) / (ulong)StripeSize);
        var cut = (ulong)((long)newSize - first * StripeSize);
        for (var s = first; s <= last; s++)
        {
            var name = ObjectName(ino, s);
            tasks.Add(s == first && cut > 0 ? IgnoreMissingAsync(pool.TruncateAsync(name, cut, ct)) : IgnoreMissingAsync(pool.RemoveAsync(name, ct)));
        }
        return Task.WhenAll(tasks);
    }

    /// <summary>Removes every data object of a file that was up to <paramref name="size"/> long.</summary>
    public Task RemoveAllAsync(ulong ino, ulong size, CancellationToken ct) => TruncateAsync(ino, Math.Max(size, 1), 0, ct);

    private static async Task IgnoreMissingAsync(Task t)
    {
        try
        {
            await t;
        }
        catch (ObjectNotFoundException)
        {
        }
    }
}
