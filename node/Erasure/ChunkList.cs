using System.Runtime.CompilerServices;
using Appliance.Erasure.Kernels;

namespace Appliance.Erasure;

/// <summary>
/// The buffers of one call, inputs first and then outputs, pinned for the kernels with one nested `fixed` per buffer
/// (a recursion as deep as the buffer count, at most K+M+2) instead of a GC handle apiece: Memory.Pin() took ~60 ns per
/// chunk, which at 4 KiB stripes cost more than the arithmetic. Lives on the stack; allocates nothing.
/// </summary>
internal unsafe struct ChunkList
{
    private Items _items;
    private int _count;

    public void Add(ReadOnlyMemory<byte> buffer) => _items[_count++] = buffer;

    /// <summary>Runs <paramref name="m"/> with the first <paramref name="inputs"/> buffers as inputs and the rest as
    /// outputs, over <paramref name="len"/> bytes of each.</summary>
    public readonly void Apply(GfKernel kernel, CodingMatrix m, int inputs, nuint len, bool accumulate)
    {
        var addresses = stackalloc byte*[_count];
        ReadOnlySpan<ReadOnlyMemory<byte>> buffers = _items;
        PinAndApply(buffers[.._count], 0, addresses, kernel, m, inputs, len, accumulate);
    }

    private static void PinAndApply(ReadOnlySpan<ReadOnlyMemory<byte>> buffers, int i, byte** addresses, GfKernel kernel, CodingMatrix m, int inputs, nuint len, bool accumulate)
    {
        if (i == buffers.Length)
        {
            GfRegion.Apply(kernel, m, addresses, addresses + inputs, len, accumulate);
            return;
        }
        fixed (byte* p = buffers[i].Span)
        {
            addresses[i] = p;
            PinAndApply(buffers, i + 1, addresses, kernel, m, inputs, len, accumulate);
        }
    }

    [InlineArray(ReedSolomonCodec.MaxChunks + 2)]
    private struct Items
    {
        private ReadOnlyMemory<byte> _first;
    }
}
