using Appliance.Maps;

namespace Appliance.Osd.Protocol;

/// <summary>Where a PG lives in an OSD's store: one collection per PG, named <c>pg.</c> and the PG id.</summary>
public static class PgCollections
{
    extension(PgId pg)
    {
        /// <summary>The store collection that holds this PG's objects and its log.</summary>
        public string Collection => $"pg.{pg}";
    }

    /// <summary>The PG of a store collection name made by <c>Collection</c>, if it is one.</summary>
    public static bool TryParseCollection(string collection, out PgId pg)
    {
        pg = default;
        return collection.StartsWith("pg.", StringComparison.Ordinal) && PgId.TryParse(collection[3..], out pg);
    }
}
