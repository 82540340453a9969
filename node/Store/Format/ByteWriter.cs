using System.Buffers.Binary;
using System.Text;

namespace Appliance.Store.Format;

/// <summary>A growable little-endian encoder for journal records and checkpoints. Strings are u16 length + UTF-8;
/// byte strings are u32 length + bytes.</summary>
public sealed class ByteWriter(int capacity = 256)
{
    private byte[] _buffer = new byte[Math.Max(16, capacity)];

    public int Length { get; private set; }

    public ReadOnlySpan<byte> Written => _buffer.AsSpan(0, Length);

    /// <summary>The written bytes, for patching a length in place.</summary>
    public Span<byte> Span => _buffer.AsSpan(0, Length);

    public ReadOnlyMemory<byte> WrittenMemory => _buffer.AsMemory(0, Length);

    public void Clear() => Length = 0;

    private Span<byte> Take(int n)
    {
        if (Length + n > _buffer.Length)
        {
            Array.Resize(ref _buffer, Math.Max(_buffer.Length * 2, Length + n));
        }
        var s = _buffer.AsSpan(Length, n);
        Length += n;
        return s;
    }

    public void U8(byte v) => Take(1)[0] = v;

    public void U16(ushort v) => BinaryPrimitives.WriteUInt16LittleEndian(Take(2), v);

    public void U32(uint v) => BinaryPrimitives.WriteUInt32LittleEndian(Take(4), v);

    public void I32(int v) => BinaryPrimitives.WriteInt32LittleEndian(Take(4), v);

    public void I64(long v) => BinaryPrimitives.WriteInt64LittleEndian(Take(8), v);

    public void U64(ulong v) => BinaryPrimitives.WriteUInt64LittleEndian(Take(8), v);

    public void Raw(ReadOnlySpan<byte> v) => v.CopyTo(Take(v.Length));

    public void Bytes(ReadOnlySpan<byte> v)
    {
        U32((uint)v.Length);
        Raw(v);
    }

    public void Str(string s)
    {
        var n = Encoding.UTF8.GetByteCount(s);
        if (n > ushort.MaxValue)
        {
            throw new ArgumentException($"name of {n} bytes is longer than {ushort.MaxValue}");
        }
        U16((ushort)n);
        Encoding.UTF8.GetBytes(s, Take(n));
    }

    /// <summary>Encoded size of <see cref="Str"/>.</summary>
    public static int StrSize(string s) => 2 + Encoding.UTF8.GetByteCount(s);
}
