namespace Appliance.Platform.Devices;

/// <summary>
/// A disk: the one interface the object store sees, whatever is underneath (a raw block device, a file, memory, or
/// a fault-injecting wrapper of any of them).
///
/// Contract, the same for every implementation so that a bug found with the in-memory device is found everywhere:
/// <list type="bullet">
/// <item>offsets and lengths are multiples of <see cref="BlockSize"/>, and buffers start at an address that is a
///   multiple of <see cref="MemoryAlignment"/> (use <see cref="AlignedBuffer"/>); anything else throws
///   <see cref="ArgumentException"/>;</item>
/// <item>a write is durable only after a <see cref="FlushAsync"/> that started after the write completed; until then
///   a power cut may lose it or tear it at a 512-byte boundary;</item>
/// <item>many operations may be in flight at once; their relative order on the medium is unspecified until a
///   flush;</item>
/// <item>after <see cref="DiscardAsync"/> the range's content is unspecified (zeros or old data).</item>
/// </list>
/// </summary>
public interface IBlockDevice : IAsyncDisposable
{
    /// <summary>A name for messages: the path, or a description.</summary>
    string Name { get; }

    /// <summary>Usable size in bytes, a multiple of <see cref="BlockSize"/>.</summary>
    long Size { get; }

    /// <summary>The I/O granularity: offsets and lengths are multiples of it (512 or 4096).</summary>
    int BlockSize { get; }

    /// <summary>The required alignment of buffer addresses.</summary>
    int MemoryAlignment { get; }

    bool IsReadOnly { get; }

    ValueTask ReadAsync(long offset, Memory<byte> destination, CancellationToken ct = default);

    ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> source, CancellationToken ct = default);

    /// <summary>
    /// Several writes at once, exactly as if each were a <see cref="WriteAsync"/> started now (same checks, same
    /// durability: none until a later flush; their order on the medium unspecified). Completes once every one has
    /// completed; if any failed, throws the first error after all have finished. A device may hand them to the
    /// medium as one batch (<see cref="FileDevice"/>: one io_submit).
    /// </summary>
    async ValueTask WriteManyAsync(IReadOnlyList<(long Offset, ReadOnlyMemory<byte> Source)> writes, CancellationToken ct = default)
    {
        var started = new List<Task>(writes.Count);
        foreach (var (offset, source) in writes)
        {
            started.Add(WriteAsync(offset, source, ct).AsTask());
        }
        await Task.WhenAll(started);
    }

    /// <summary>Makes every write that completed before this call durable.</summary>
    ValueTask FlushAsync(CancellationToken ct = default);

    ValueTask DiscardAsync(long offset, long length, CancellationToken ct = default);
}
