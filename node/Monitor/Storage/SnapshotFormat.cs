using Appliance.Platform.Checksums;
using System.Buffers.Binary;
using Appliance.Wire.Codec;

namespace Appliance.Monitor.Storage;

/// <summary>
/// The snapshot file: the whole store as of one sequence number.
/// <code>
/// "APMONSNP" | struct v1 { u64 sequence; u32 prefix count; per prefix: string prefix, u32 key count, per key: string key, bytes value } | u32 crc32c(everything before)
/// </code>
/// A snapshot is written to a temporary name, flushed and renamed into place, so a damaged one is corruption, never a
/// crash artefact.
/// </summary>
internal static class SnapshotFormat
{
    private const byte Version = 1;
    private static ReadOnlySpan<byte> FileMagic => "APMONSNP"u8;

    public static byte[] Encode(ulong seq, IReadOnlyDictionary<string, SortedList<string, byte[]>> state)
    {
        using var w = new WireWriter(1 << 16);
        w.WriteFixed(FileMagic);
        var mark = w.BeginStruct(Version, 1);
        w.WriteU64(seq);
        var prefixes = state.Where(kv => kv.Value.Count > 0).OrderBy(kv => kv.Key, StringComparer.Ordinal).ToList();
        w.WriteU32((uint)prefixes.Count);
        foreach (var (prefix, keys) in prefixes)
        {
            w.WriteString(prefix);
            w.WriteU32((uint)keys.Count);
            foreach (var (key, value) in keys)
            {
                w.WriteString(key);
                w.WriteBytes(value);
            }
        }
        w.EndStruct(mark);
        w.WriteU32(Crc32C.Compute(w.WrittenSpan));
        return w.ToArray();
    }

    public static (ulong Seq, Dictionary<string, SortedList<string, byte[]>> State) Decode(ReadOnlySpan<byte> file, string path)
    {
        if (file.Length < FileMagic.Length + 4 || !file[..FileMagic.Length].SequenceEqual(FileMagic))
        {
            throw new MonitorStoreCorruptionException(path, 0, "not a monitor store snapshot (bad magic or too short)");
        }
        var body = file[..^4];
        if (Crc32C.Compute(body) != BinaryPrimitives.ReadUInt32LittleEndian(file[^4..]))
        {
            throw new MonitorStoreCorruptionException(path, file.Length - 4, "snapshot checksum mismatch");
        }
        try
        {
            var r = new WireReader(body[FileMagic.Length..]);
            var scope = r.BeginStruct(Version, "monitor store snapshot");
            var seq = r.ReadU64();
            var prefixCount = r.ReadU32();
            var state = new Dictionary<string, SortedList<string, byte[]>>(StringComparer.Ordinal);
            for (var i = 0u; i < prefixCount; i++)
            {
                var prefix = r.ReadString(WriteBatch.MaxNameBytes);
                var keyCount = r.ReadU32();
                var keys = new SortedList<string, byte[]>(StringComparer.Ordinal);
                for (var k = 0u; k < keyCount; k++)
                {
                    var key = r.ReadString(WriteBatch.MaxNameBytes);
                    keys.Add(key, r.ReadBytes(WriteBatch.MaxValueBytes).ToArray());
                }
                state.Add(prefix, keys);
            }
            r.EndStruct(scope);
            r.ExpectEnd("monitor store snapshot");
            return (seq, state);
        }
        catch (Exception e) when (e is WireFormatException or ArgumentException)
        {
            // The checksum matched, so these bytes are what a writer produced: a bug or a foreign file, not a crash.
            throw new MonitorStoreCorruptionException(path, 0, $"snapshot does not decode: {e.Message}");
        }
    }
}
