using System.Buffers;
using System.Runtime.InteropServices;

namespace Appliance.Platform.Devices;

/// <summary>
/// Zeroed native memory at a fixed, aligned address (NativeMemory.AlignedAlloc), as O_DIRECT needs. The GC never
/// moves it, so pinning is free. Dispose it: there is no finalizer, because a
/// finalizer could free memory a Span still points into (CA2015).
/// </summary>
public sealed unsafe class AlignedBuffer : MemoryManager<byte>
{
    private byte* _pointer;
    private readonly int _length;

    public AlignedBuffer(int length, int alignment = 4096)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        if (alignment <= 0 || (alignment & (alignment - 1)) != 0)
        {
            throw new ArgumentException($"alignment {alignment} is not a power of two", nameof(alignment));
        }
        _length = length;
        _pointer = (byte*)NativeMemory.AlignedAlloc((nuint)Math.Max(length, 1), (nuint)alignment);
        NativeMemory.Clear(_pointer, (nuint)length);
    }

    public int Length => _length;

    public byte* Pointer => _pointer != null ? _pointer : throw new ObjectDisposedException(nameof(AlignedBuffer));

    public override Span<byte> GetSpan() => new(Pointer, _length);

    public override MemoryHandle Pin(int elementIndex = 0)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThan((uint)elementIndex, (uint)_length);
        return new MemoryHandle(Pointer + elementIndex);
    }

    public override void Unpin()
    {
    }

    /// <summary>Frees the memory. Every Memory/Span over it is invalid afterwards.</summary>
    public void Dispose() => ((IDisposable)this).Dispose();

    protected override void Dispose(bool disposing)
    {
        if (_pointer != null)
        {
            NativeMemory.AlignedFree(_pointer);
            _pointer = null;
        }
    }
}
