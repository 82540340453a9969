using System.Buffers;
using System.Buffers.Binary;
using System.Text;

namespace Appliance.Wire.Codec;

/// <summary>
/// Encodes little-endian primitives, byte strings and versioned structures into a growable pooled buffer. Dispose
/// returns the buffer to the pool.
/// </summary>
public sealed class WireWriter : IDisposable
{
    /// <summary>The pool for frame-sized buffers. The shared pool only keeps arrays up to 1 MiB; frames go to 16 MiB
    /// and allocating those each time would churn the large object heap.</summary>
    public static readonly ArrayPool<byte> Pool = ArrayPool<byte>.Create(maxArrayLength: 32 << 20, maxArraysPerBucket: 32);

    private byte[] _buffer;
    private int _length;

    public WireWriter(int initialCapacity = 256)
    {
        _buffer = Pool.Rent(initialCapacity);
    }

    public int Length => _length;

    public ReadOnlySpan<byte> WrittenSpan => _buffer.AsSpan(0, _length);

    public ReadOnlyMemory<byte> WrittenMemory => _buffer.AsMemory(0, _length);

    public void Clear() => _length = 0;

    public Span<byte> GetSpan(int size)
    {
        if (_buffer.Length - _length < size)
        {
            var bigger = Pool.Rent(Math.Max(_buffer.Length * 2, _length + size));
            _buffer.AsSpan(0, _length).CopyTo(bigger);
            Pool.Return(_buffer);
            _buffer = bigger;
        }
        return _buffer.AsSpan(_length, size);
    }

    public void Advance(int count) => _length += count;

    public void WriteU8(byte v)
    {
        GetSpan(1)[0] = v;
        _length++;
    }

    public void WriteBool(bool v) => WriteU8(v ? (byte)1 : (byte)0);

    public void WriteU16(ushort v)
    {
        BinaryPrimitives.WriteUInt16LittleEndian(GetSpan(2), v);
        _length += 2;
    }

    public void WriteU32(uint v)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(GetSpan(4), v);
        _length += 4;
    }

    public void WriteI32(int v)
    {
        BinaryPrimitives.WriteInt32LittleEndian(GetSpan(4), v);
        _length += 4;
    }

    public void WriteU64(ulong v)
    {
        BinaryPrimitives.WriteUInt64LittleEndian(GetSpan(8), v);
        _length += 8;
    }

    public void WriteI64(long v)
    {
        BinaryPrimitives.WriteInt64LittleEndian(GetSpan(8), v);
        _length += 8;
    }

    public void WriteFixed(ReadOnlySpan<byte> bytes)
    {
        bytes.CopyTo(GetSpan(bytes.Length));
        _length += bytes.Length;
    }

    public void WriteBytes(ReadOnlySpan<byte> bytes)
    {
        WriteU32((uint)bytes.Length);
        WriteFixed(bytes);
    }

    public void WriteString(string s)
    {
        var n = Encoding.UTF8.GetByteCount(s);
        WriteU32((uint)n);
        Encoding.UTF8.GetBytes(s, GetSpan(n));
        _length += n;
    }

    /// <summary>Starts a versioned structure: <paramref name="version"/> of this encoding and
    /// <paramref name="compat"/>, the oldest reader version that can decode it. Returns the mark for
    /// <see cref="EndStruct"/>, which fills in the length.</summary>
    public int BeginStruct(byte version, byte compat)
    {
        WriteU8(version);
        WriteU8(compat);
        var mark = _length;
        WriteU32(0);
        return mark;
    }

    public void EndStruct(int mark) =>
        BinaryPrimitives.WriteUInt32LittleEndian(_buffer.AsSpan(mark, 4), (uint)(_length - mark - 4));

    public byte[] ToArray() => WrittenSpan.ToArray();

    public void Dispose()
    {
        if (_buffer.Length > 0)
        {
            Pool.Return(_buffer);
            _buffer = [];
            _length = 0;
        }
    }
}
