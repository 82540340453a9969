using System.Globalization;
using System.Text;
using Appliance.Maps;

namespace Appliance.Monitor.Maps;

/// <summary>One line of `osd tree`: a bucket (Status and Reweight null) or an OSD. Weight is the CRUSH weight (TiB);
/// Reweight 1 for in, 0 for out.</summary>
public sealed record OsdTreeRow(int Id, string? Class, double Weight, string Type, string Name, int Depth, string? Status, double? Reweight);

/// <summary>`osd tree` as data: the CRUSH hierarchy depth first from each root (children in bucket order), each OSD
/// with up/down and in/out; OSDs the map knows but CRUSH does not place come last, at depth 0.</summary>
public static class OsdTree
{
    public static IReadOnlyList<OsdTreeRow> Build(OsdMap map)
    {
        ArgumentNullException.ThrowIfNull(map);
        var crush = map.Crush;
        var rows = new List<OsdTreeRow>();
        var nonShadow = crush.BucketOrder.ToHashSet();
        var children = crush.BucketOrder.SelectMany(id => crush.GetBucket(id)!.Items).ToHashSet();
        var placed = new HashSet<int>();
        void Visit(int id, uint weight, int depth)
        {
            if (depth > 64)
            {
                return;
            }
            if (id >= 0)
            {
                placed.Add(id);
                rows.Add(OsdRow(map, id, weight, depth));
                return;
            }
            var b = crush.GetBucket(id)!;
            rows.Add(new OsdTreeRow(id, null, weight / 65536.0, crush.GetTypeName(b.TypeId) ?? "?", b.Name, depth, null, null));
            for (var i = 0; i < b.Items.Count; i++)
            {
                if (b.Items[i] >= 0 || nonShadow.Contains(b.Items[i]))
                {
                    Visit(b.Items[i], b.Weights[i], depth + 1);
                }
            }
        }
        foreach (var root in crush.BucketOrder.Where(id => !children.Contains(id)).OrderByDescending(id => id))
        {
            Visit(root, crush.GetBucket(root)!.Weight, 0);
        }
        foreach (var osd in map.Osds.Values.Where(o => !placed.Contains(o.Id)))
        {
            rows.Add(OsdRow(map, osd.Id, 0, 0));
        }
        return rows;
    }

    private static OsdTreeRow OsdRow(OsdMap map, int id, uint weight, int depth)
    {
        var osd = map.FindOsd(id);
        var cls = map.Crush.Devices.FirstOrDefault(d => d.Id == id)?.Class;
        return new OsdTreeRow(id, cls, weight / 65536.0, "osd", CrushLayout.OsdName(id), depth,
            osd is null ? "dne" : osd.Up ? "up" : "down", osd is null ? 0 : osd.In ? 1 : 0);
    }

    /// <summary>The rows as `ceph osd tree` prints them: ID CLASS WEIGHT TYPE NAME STATUS REWEIGHT.</summary>
    public static string Format(IReadOnlyList<OsdTreeRow> rows)
    {
        ArgumentNullException.ThrowIfNull(rows);
        var sb = new StringBuilder();
        var names = rows.Select(r => new string(' ', 4 * r.Depth) + (r.Status is null ? $"{r.Type} {r.Name}" : r.Name)).ToList();
        var width = Math.Max(4, names.Count == 0 ? 0 : names.Max(n => n.Length));
        sb.Append(CultureInfo.InvariantCulture, $"{"ID",4}  {"CLASS",-5}  {"WEIGHT",8}  {"TYPE NAME".PadRight(width)}  {"STATUS",6}  {"REWEIGHT",8}\n");
        for (var i = 0; i < rows.Count; i++)
        {
            var r = rows[i];
            sb.Append(CultureInfo.InvariantCulture,
                $"{r.Id,4}  {r.Class ?? "",-5}  {r.Weight,8:0.00000}  {names[i].PadRight(width)}  {r.Status ?? "",6}  {(r.Reweight is { } w ? w.ToString("0.00000", CultureInfo.InvariantCulture) : ""),8}\n");
        }
        return sb.ToString();
    }
}
