using System.Buffers.Binary;
using Appliance.Client;
using Appliance.Osd.Protocol;

namespace Appliance.BlockDev.Images.Cluster;

/// <summary>
/// An image striped over the objects of a pool (see <see cref="ImageHeader"/>): byte <c>x</c> lives in data object
/// <c>x / objectSize</c> at <c>x % objectSize</c>. Thin: a data object exists only once written; a missing object, or
/// the part past its end, reads as zeros. A request spanning objects runs its pieces in parallel; a write is durable
/// on every member of its PG when the OSD answers, so FLUSH and FUA cost nothing and a flush covers every writer.
/// Opened for writing, it holds the image's lock (<see cref="ImageLock"/>); a server that lost it was fenced, and the
/// OSDs refuse its writes.
/// </summary>
public sealed class ClusterImage : IImage
{
    /// <summary>The most one request to an OSD carries (under the 15 MiB payload limit).</summary>
    private const int Piece = 8 << 20;

    /// <summary>How many objects a block-status query asks about at once.</summary>
    private const int MapBatch = 32;

    private readonly IoContext _io;
    private readonly ImageHeader _header;
    private readonly ImageLock? _lock;

    internal ClusterImage(string name, IoContext io, ImageHeader header, ImageLock? imageLock)
    {
        Name = name;
        _io = io;
        _header = header;
        _lock = imageLock;
    }

    public string Name { get; }

    public long Size => _header.Size;

    public bool IsReadOnly => _lock is null;

    public bool FlushCoversAllWriters => true;

    public ImageHeader Header => _header;

    private readonly record struct Span(long Object, long Offset, int Length, long ImageOffset);

    /// <summary>The pieces of [offset, offset + length): one per object, at most <see cref="Piece"/> bytes each.</summary>
    private List<Span> Split(long offset, long length)
    {
        var pieces = new List<Span>();
        var end = offset + length;
        for (var pos = offset; pos < end;)
        {
            var obj = pos >> _header.ObjectOrder;
            var within = pos & (_header.ObjectSize - 1);
            var n = (int)Math.Min(Math.Min(end - pos, _header.ObjectSize - within), Piece);
            pieces.Add(new Span(obj, within, n, pos));
            pos += n;
        }
        return pieces;
    }

    private string DataName(long obj) => ImageObjects.Data(_header.Id, obj);

    private static Task WhenAll(List<Span> pieces, Func<Span, Task> run)
    {
        if (pieces.Count == 1)
        {
            return run(pieces[0]);
        }
        var tasks = new Task[pieces.Count];
        for (var i = 0; i < pieces.Count; i++)
        {
            tasks[i] = run(pieces[i]);
        }
        return Task.WhenAll(tasks);
    }

    public async ValueTask ReadAsync(long offset, Memory<byte> destination, CancellationToken ct)
    {
        await GuardAsync(async () => await WhenAll(Split(offset, destination.Length), async p =>
        {
            var dest = destination.Slice((int)(p.ImageOffset - offset), p.Length);
            ReadOnlyMemory<byte> data;
            try
            {
                data = await _io.ReadAsync(DataName(p.Object), (ulong)p.Offset, (ulong)p.Length, ct);
            }
            catch (ObjectNotFoundException)
            {
                data = ReadOnlyMemory<byte>.Empty; // never written: zeros
            }
            data.Span.CopyTo(dest.Span);
            dest.Span[data.Length..].Clear();
        }), offset, write: false);
    }

    public async ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> source, bool fua, CancellationToken ct)
    {
        CheckWritable(offset);
        await GuardAsync(async () => await WhenAll(Split(offset, source.Length), p =>
            _io.WriteAsync(DataName(p.Object), (ulong)p.Offset, source.Slice((int)(p.ImageOffset - offset), p.Length), ct)), offset, write: true);
    }

    /// <summary>Writes are durable when their reply goes out (every member of the PG has them on disk).</summary>
    public ValueTask FlushAsync(CancellationToken ct) => ValueTask.CompletedTask;

    public async ValueTask TrimAsync(long offset, long length, bool fua, CancellationToken ct)
    {
        CheckWritable(offset);
        await DeallocateAsync(offset, length, ct);
    }

    public async ValueTask<bool> ZeroAsync(long offset, long length, ZeroOptions options, bool fua, CancellationToken ct)
    {
        CheckWritable(offset);
        if ((options & ZeroOptions.NoHole) != 0)
        {
            if ((options & ZeroOptions.FastOnly) != 0)
            {
                return false; // keeping it allocated means writing zeroes: not faster
            }
            var zeros = new byte[(int)Math.Min(length, Piece)];
            for (var pos = offset; pos < offset + length; pos += zeros.Length)
            {
                var n = (int)Math.Min(zeros.Length, offset + length - pos);
                await WriteAsync(pos, zeros.AsMemory(0, n), fua, ct);
            }
            return true;
        }
        await DeallocateAsync(offset, length, ct);
        return true;
    }

    /// <summary>Makes the range read as zeros, freeing what it can: a whole object is removed, an object's tail is
    /// truncated (if the object exists), anything else is zeroed (the store turns whole zeroed blocks into holes).</summary>
    private async Task DeallocateAsync(long offset, long length, CancellationToken ct)
    {
        var pieces = new List<Span>();
        var end = offset + length;
        for (var pos = offset; pos < end;)
        {
            var obj = pos >> _header.ObjectOrder;
            var within = pos & (_header.ObjectSize - 1);
            var n = Math.Min(end - pos, _header.ObjectSize - within);
            pieces.Add(new Span(obj, within, (int)n, pos));
            pos += n;
        }
        await GuardAsync(async () => await WhenAll(pieces, async p =>
        {
            var name = DataName(p.Object);
            var toEnd = p.Offset + p.Length >= _header.ObjectSize || p.ImageOffset + p.Length >= _header.Size;
            try
            {
                if (p.Offset == 0 && toEnd)
                {
                    await _io.RemoveAsync(name, ct);
                }
                else if (toEnd)
                {
                    await _io.ExecuteAsync(name, [OsdOp.AssertExists(), OsdOp.Truncate((ulong)p.Offset)], null, ct);
                }
                else
                {
                    await _io.ZeroAsync(name, (ulong)p.Offset, (ulong)p.Length, ct);
                }
            }
            catch (ObjectNotFoundException)
            {
                // Never written: already zeros.
            }
        }), offset, write: true);
    }

    public async ValueTask<int> GetExtentsAsync(long offset, long length, Memory<ImageExtent> destination, CancellationToken ct)
    {
        var result = new List<(long Start, long Length, ExtentFlags Flags)>();
        var end = offset + length;
        var pos = offset;
        while (pos < end && result.Count < destination.Length)
        {
            // One batch of objects at a time, asked in parallel.
            var batch = new List<Span>();
            for (var p = pos; p < end && batch.Count < MapBatch;)
            {
                var obj = p >> _header.ObjectOrder;
                var within = p & (_header.ObjectSize - 1);
                var n = Math.Min(end - p, _header.ObjectSize - within);
                batch.Add(new Span(obj, within, (int)n, p));
                p += n;
            }
            var maps = new (long Offset, long Length)[]?[batch.Count];
            await GuardAsync(() => Task.WhenAll(batch.Select(async (p, i) =>
            {
                try
                {
                    var reply = await _io.ExecuteAsync(DataName(p.Object), [OsdOp.MapExtents((ulong)p.Offset, (ulong)p.Length)], null, ct);
                    var data = reply.Outputs[0].Data.Span;
                    var runs = new (long, long)[data.Length / 16];
                    for (var k = 0; k < runs.Length; k++)
                    {
                        runs[k] = (BinaryPrimitives.ReadInt64LittleEndian(data[(k * 16)..]), BinaryPrimitives.ReadInt64LittleEndian(data[(k * 16 + 8)..]));
                    }
                    maps[i] = runs;
                }
                catch (ObjectNotFoundException)
                {
                    maps[i] = null;
                }
            })), pos, write: false);
            for (var i = 0; i < batch.Count; i++)
            {
                var p = batch[i];
                var objectBase = p.ImageOffset - p.Offset;
                var at = p.Offset;
                foreach (var (runOffset, runLength) in maps[i] ?? [])
                {
                    var from = Math.Max(runOffset, p.Offset);
                    var to = Math.Min(runOffset + runLength, p.Offset + p.Length);
                    if (to <= from)
                    {
                        continue;
                    }
                    Add(result, objectBase + at, from - at, ExtentFlags.Hole | ExtentFlags.Zero);
                    Add(result, objectBase + from, to - from, ExtentFlags.Data);
                    at = to;
                }
                Add(result, objectBase + at, p.Offset + p.Length - at, ExtentFlags.Hole | ExtentFlags.Zero);
            }
            pos = batch[^1].ImageOffset + batch[^1].Length;
        }
        var count = Math.Min(result.Count, destination.Length);
        for (var i = 0; i < count; i++)
        {
            destination.Span[i] = new ImageExtent(result[i].Length, result[i].Flags);
        }
        return count;
    }

    private static void Add(List<(long Start, long Length, ExtentFlags Flags)> extents, long start, long length, ExtentFlags flags)
    {
        if (length <= 0)
        {
            return;
        }
        if (extents.Count > 0 && extents[^1].Flags == flags && extents[^1].Start + extents[^1].Length == start)
        {
            extents[^1] = (extents[^1].Start, extents[^1].Length + length, flags);
            return;
        }
        extents.Add((start, length, flags));
    }

    public ValueTask CacheAsync(long offset, long length, CancellationToken ct) => ValueTask.CompletedTask;

    private void CheckWritable(long offset)
    {
        if (_lock is null)
        {
            throw new ImageException(ImageErrorKind.ReadOnly, $"image {Name} is open read-only", offset);
        }
        // A lock lost to another server is not checked here: it only moves after that server had this instance
        // blocklisted, so the OSDs refuse the write (BlocklistedException below): fencing does not depend on this
        // server noticing in time.
    }

    /// <summary>The one place cluster errors become image errors (the NBD layer maps those to protocol errors).</summary>
    private async Task GuardAsync(Func<Task> run, long offset, bool write)
    {
        try
        {
            await run();
        }
        catch (BlocklistedException e)
        {
            throw new ImageException(ImageErrorKind.ReadOnly, $"image {Name}: this server was fenced (another server took the image over): {e.Message}", offset, e);
        }
        catch (ClusterFullException e)
        {
            throw new ImageException(ImageErrorKind.NoSpace, $"image {Name}: {e.Message}", offset, e);
        }
        catch (QuotaExceededException e)
        {
            throw new ImageException(ImageErrorKind.NoSpace, $"image {Name}: {e.Message}", offset, e);
        }
        catch (PermissionDeniedException e)
        {
            throw new ImageException(write ? ImageErrorKind.ReadOnly : ImageErrorKind.Io, $"image {Name}: {e.Message}", offset, e);
        }
        catch (ClusterClientException e)
        {
            throw new ImageException(ImageErrorKind.Io, $"image {Name}: {e.Message}", offset, e);
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (_lock is not null)
        {
            await _lock.DisposeAsync();
        }
    }
}
