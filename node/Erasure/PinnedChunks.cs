using System.Buffers;
using System.Runtime.CompilerServices;

namespace Appliance.Erasure;

/// <summary>
/// Pins up to <see cref="ReedSolomonCodec.MaxChunks"/> buffers for the kernels, which take raw pointers. Lives on
/// the stack (an inline array of handles), so a call allocates nothing; Dispose unpins.
/// </summary>
internal unsafe struct PinnedChunks : IDisposable
{
    private Handles _handles;
    private int _count;

    /// <summary>Pins <paramref name="memory"/> until Dispose and returns its address.</summary>
    public byte* Add(ReadOnlyMemory<byte> memory)
    {
        _handles[_count] = memory.Pin();
        return (byte*)_handles[_count++].Pointer;
    }

    public void Dispose()
    {
        for (var i = 0; i < _count; i++)
        {
            _handles[i].Dispose();
        }
        _count = 0;
    }

    [InlineArray(ReedSolomonCodec.MaxChunks)]
    private struct Handles
    {
        private MemoryHandle _first;
    }
}
