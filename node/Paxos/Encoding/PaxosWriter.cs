using System.Buffers.Binary;

namespace Appliance.Paxos.Encoding;

/// <summary>Appends little-endian primitives to a growable array. Small and allocation-light: messages of the
/// replicated log are a few hundred bytes.</summary>
internal sealed class PaxosWriter(int capacity = 128)
{
    private byte[] _buffer = new byte[capacity];
    private int _length;

    public ReadOnlySpan<byte> Written => _buffer.AsSpan(0, _length);

    public byte[] ToArray() => Written.ToArray();

    private Span<byte> Take(int n)
    {
        if (_buffer.Length - _length < n)
        {
            Array.Resize(ref _buffer, Math.Max(_buffer.Length * 2, _length + n));
        }
        var span = _buffer.AsSpan(_length, n);
        _length += n;
        return span;
    }

    public void U8(byte v) => Take(1)[0] = v;

    public void I32(int v) => BinaryPrimitives.WriteInt32LittleEndian(Take(4), v);

    public void I64(long v) => BinaryPrimitives.WriteInt64LittleEndian(Take(8), v);

    public void Bytes(ReadOnlySpan<byte> v)
    {
        I32(v.Length);
        v.CopyTo(Take(v.Length));
    }

    /// <summary>Overwrites 4 bytes at <paramref name="offset"/> (a length written after its contents).</summary>
    public void PatchI32(int offset, int v) => BinaryPrimitives.WriteInt32LittleEndian(_buffer.AsSpan(offset, 4), v);

    public int Position => _length;
}
