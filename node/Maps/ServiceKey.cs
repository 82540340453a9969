using System.Collections.Immutable;
using Appliance.Wire.Auth;
using Appliance.Wire.Codec;

namespace Appliance.Maps;

/// <summary>One generation of a ticket service's rotating secret (the monitors' auth database keeps each service's
/// keys): tickets for the service are sealed with it, and the service's daemons open them with it.</summary>
public sealed record ServiceKey(uint Id, Secret Key, long ExpiresMs)
{
    private const byte Version = 1;

    internal void Encode(WireWriter w)
    {
        var m = w.BeginStruct(Version, 1);
        w.WriteU32(Id);
        MapCodec.WriteSecret(w, Key);
        w.WriteI64(ExpiresMs);
        w.EndStruct(m);
    }

    internal static ServiceKey Decode(ref WireReader r)
    {
        var s = r.BeginStruct(Version, "service key");
        var id = r.ReadU32();
        var key = new ServiceKey(id, MapCodec.ReadSecret(ref r, $"service key {id}"), r.ReadI64());
        r.EndStruct(s);
        return key;
    }

    /// <summary>The keys of each service: a count, then per service its name and its keys, oldest first.</summary>
    internal static void EncodeMap(WireWriter w, IReadOnlyDictionary<string, ImmutableList<ServiceKey>> map)
    {
        w.WriteU32((uint)map.Count);
        foreach (var (service, keys) in map.OrderBy(kv => kv.Key, StringComparer.Ordinal))
        {
            w.WriteString(service);
            w.WriteU32((uint)keys.Count);
            foreach (var k in keys)
            {
                k.Encode(w);
            }
        }
    }

    internal static ImmutableSortedDictionary<string, ImmutableList<ServiceKey>> DecodeMap(ref WireReader r)
    {
        var n = MapCodec.ReadCount(ref r, 4, "services with keys");
        var b = ImmutableSortedDictionary.CreateBuilder<string, ImmutableList<ServiceKey>>(StringComparer.Ordinal);
        for (var i = 0; i < n; i++)
        {
            var service = r.ReadString(MapCodec.MaxString);
            var count = MapCodec.ReadCount(ref r, 20, "service keys");
            var keys = ImmutableList.CreateBuilder<ServiceKey>();
            for (var j = 0; j < count; j++)
            {
                keys.Add(Decode(ref r));
            }
            if (!b.TryAdd(service, keys.ToImmutable()))
            {
                throw new WireFormatException($"the keys of service {service} are listed twice");
            }
        }
        return b.ToImmutable();
    }
}
