using System.Buffers.Binary;
using System.Text;

namespace Appliance.Store.Format;

/// <summary>The decoder matching <see cref="ByteWriter"/>: every read checks the bounds and a short or malformed
/// input becomes a <see cref="CorruptionException"/> naming <paramref name="what"/>.</summary>
public ref struct SpanReader(ReadOnlySpan<byte> data, string what)
{
    private readonly ReadOnlySpan<byte> _data = data;
    private readonly string _what = what;
    private int _pos;

    public readonly int Position => _pos;

    public readonly int Remaining => _data.Length - _pos;

    public readonly bool AtEnd => _pos >= _data.Length;

    private ReadOnlySpan<byte> Take(int n)
    {
        if (n < 0 || n > _data.Length - _pos)
        {
            throw new CorruptionException($"{_what}: truncated at byte {_pos} (wanted {n} more, {_data.Length - _pos} left)");
        }
        var s = _data.Slice(_pos, n);
        _pos += n;
        return s;
    }

    public byte U8() => Take(1)[0];

    public ushort U16() => BinaryPrimitives.ReadUInt16LittleEndian(Take(2));

    public uint U32() => BinaryPrimitives.ReadUInt32LittleEndian(Take(4));

    public int I32() => BinaryPrimitives.ReadInt32LittleEndian(Take(4));

    public long I64() => BinaryPrimitives.ReadInt64LittleEndian(Take(8));

    public ulong U64() => BinaryPrimitives.ReadUInt64LittleEndian(Take(8));

    public ReadOnlySpan<byte> Raw(int n) => Take(n);

    public byte[] Bytes() => Take(checked((int)U32())).ToArray();

    public string Str()
    {
        var n = U16();
        try
        {
            return new UTF8Encoding(false, true).GetString(Take(n));
        }
        catch (DecoderFallbackException e)
        {
            throw new CorruptionException($"{_what}: a name at byte {_pos - n} is not valid UTF-8", e);
        }
    }

    public readonly void Fail(string message) => throw new CorruptionException($"{_what}: {message} at byte {_pos}");
}
