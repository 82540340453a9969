using System.Collections.Concurrent;
using System.Numerics;
using Appliance.Platform.Devices;

namespace Appliance.Store;

/// <summary>
/// Reuses aligned I/O buffers: a fresh 4 MiB native buffer costs more (mapping and faulting its pages) than
/// writing it to a fast disk. Sizes are rounded up to a power of two; at most 8 buffers per size up to 8 MiB are
/// kept, so the pool holds at most ~128 MiB and usually far less. Thread-safe.
/// </summary>
internal static class BufferPool
{
    private const int MaxPooled = 8 << 20;
    private const int PerClass = 8;
    private static readonly ConcurrentBag<AlignedBuffer>[] Classes = [.. Enumerable.Range(0, 32).Select(_ => new ConcurrentBag<AlignedBuffer>())];

    /// <summary>A buffer of at least <paramref name="length"/> bytes, 4096-aligned, content unspecified (callers
    /// write every byte they pass on, or clear it).</summary>
    public static AlignedBuffer Rent(int length)
    {
        var size = (int)BitOperations.RoundUpToPowerOf2((uint)Math.Max(length, 4096));
        if (size <= MaxPooled && Classes[BitOperations.Log2((uint)size)].TryTake(out var b))
        {
            return b;
        }
        return new AlignedBuffer(size, 4096);
    }

    public static void Return(AlignedBuffer buffer)
    {
        var size = buffer.Length;
        if (size > MaxPooled || !BitOperations.IsPow2(size))
        {
            buffer.Dispose();
            return;
        }
        var bag = Classes[BitOperations.Log2((uint)size)];
        if (bag.Count >= PerClass)
        {
            buffer.Dispose();
            return;
        }
        bag.Add(buffer);
    }
}
