//! Incremental search over a time window, past HubSpot's 10,000-result cap, as a pure planner.
//!
//! HubSpot honours only one sort per search and pages through at most 10,000 results. Sorting
//! by `lastmodifieddate` and restarting "after the last timestamp" skips or repeats records when
//! many share one timestamp (their order is undefined), and loops when more than a page does.
//! So the window is fixed when the run starts (`from ≤ lastmodifieddate < to`), results are
//! sorted by `hs_object_id` (unique, total order), and when the cap is near the query restarts
//! with `hs_object_id > last id seen`. Every record of the window is returned once, whatever
//! the timestamps; records modified during the run fall after `to` and belong to the next run.

use super::types::{Filter, FilterGroup, SEARCH_PAGE_LIMIT, SEARCH_RESULT_CAP, SearchRequest, Sort};

/// Where a windowed search stands; feed each page to [`SearchPlan::next`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchPlan {
    time_property: String,
    from_ms: i64,
    to_ms: i64,
    properties: Vec<String>,
    /// Restart point: only ids above this one (set when a query reaches the cap).
    above_id: Option<u64>,
    /// Paging cursor inside the current query.
    after: Option<usize>,
    /// Queries made so far (re-windows + 1).
    pub queries: u32,
}

impl SearchPlan {
    /// Records with `from_ms ≤ time_property < to_ms` (epoch milliseconds).
    pub fn new(time_property: &str, from_ms: i64, to_ms: i64, properties: Vec<String>) -> Self {
        Self {
            time_property: time_property.to_string(),
            from_ms,
            to_ms,
            properties,
            above_id: None,
            after: None,
            queries: 1,
        }
    }

    /// The body of the next search request.
    pub fn request(&self) -> SearchRequest {
        let mut filters = vec![
            Filter {
                property_name: self.time_property.clone(),
                operator: "GTE",
                value: self.from_ms.to_string(),
            },
            Filter {
                property_name: self.time_property.clone(),
                operator: "LT",
                value: self.to_ms.to_string(),
            },
        ];
        if let Some(id) = self.above_id {
            filters.push(Filter {
                property_name: "hs_object_id".into(),
                operator: "GT",
                value: id.to_string(),
            });
        }
        SearchRequest {
            filter_groups: vec![FilterGroup { filters }],
            sorts: vec![Sort {
                property_name: "hs_object_id".into(),
                direction: "ASCENDING",
            }],
            properties: self.properties.clone(),
            limit: SEARCH_PAGE_LIMIT,
            after: self.after.map(|a| a.to_string()),
        }
    }

    /// Advances past a page: `ids` are the page's record ids in order, `next_after` HubSpot's
    /// cursor. Returns `false` when the window is exhausted.
    pub fn next(&mut self, ids: &[u64], next_after: Option<&str>) -> bool {
        let Some(next) = next_after.and_then(|a| a.parse::<usize>().ok()) else {
            return false;
        };
        if next + SEARCH_PAGE_LIMIT <= SEARCH_RESULT_CAP {
            self.after = Some(next);
            return true;
        }
        // The next page would cross the cap: start a new query above the last id seen.
        match ids.iter().max() {
            Some(&last) => {
                self.above_id = Some(last);
                self.after = None;
                self.queries += 1;
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake search index: (id, timestamp) records, answering like HubSpot (cap included).
    fn run(records: &[(u64, i64)], from: i64, to: i64) -> (Vec<u64>, u32, usize) {
        let mut plan = SearchPlan::new("lastmodifieddate", from, to, vec![]);
        let mut seen = Vec::new();
        let mut requests = 0;
        loop {
            requests += 1;
            assert!(requests < 10_000, "the search loops");
            let req = plan.request();
            let value = |op: &str, prop: &str| {
                req.filter_groups[0]
                    .filters
                    .iter()
                    .find(|f| f.operator == op && f.property_name == prop)
                    .map(|f| f.value.parse::<i64>().unwrap())
            };
            let (gte, lt) = (
                value("GTE", "lastmodifieddate").unwrap(),
                value("LT", "lastmodifieddate").unwrap(),
            );
            let above = value("GT", "hs_object_id");
            let mut hits: Vec<u64> = records
                .iter()
                .filter(|(id, t)| *t >= gte && *t < lt && above.is_none_or(|a| *id as i64 > a))
                .map(|(id, _)| *id)
                .collect();
            hits.sort();
            let offset = req.after.as_deref().map_or(0, |a| a.parse::<usize>().unwrap());
            assert!(
                offset + req.limit <= SEARCH_RESULT_CAP,
                "HubSpot answers 400 past 10,000"
            );
            let page: Vec<u64> = hits.iter().skip(offset).take(req.limit).copied().collect();
            let next = (offset + req.limit < hits.len()).then(|| (offset + req.limit).to_string());
            seen.extend(&page);
            if !plan.next(&page, next.as_deref()) {
                break;
            }
        }
        (seen, plan.queries, requests)
    }

    #[test]
    fn a_small_window_is_one_query() {
        let records: Vec<_> = (1..=450).map(|i| (i, 1_000 + i as i64)).collect();
        let (seen, queries, requests) = run(&records, 0, 10_000);
        assert_eq!(seen, (1..=450).collect::<Vec<_>>());
        assert_eq!((queries, requests), (1, 3));
    }

    #[test]
    fn past_ten_thousand_results_with_many_on_one_timestamp_nothing_is_skipped_or_repeated() {
        // 25,000 records, 12,000 of them on one millisecond, ids shuffled against time.
        let records: Vec<(u64, i64)> = (0..25_000u64)
            .map(|i| {
                let id = (i * 7_919) % 25_000 + 1;
                let t = if i < 12_000 { 5_000 } else { 5_000 + i as i64 };
                (id, t)
            })
            .collect();
        let (seen, queries, requests) = run(&records, 0, 100_000);
        let mut sorted = seen.clone();
        sorted.dedup();
        assert_eq!(sorted.len(), seen.len(), "no record twice");
        assert_eq!(seen.len(), 25_000, "no record skipped");
        assert_eq!(queries, 3);
        assert_eq!(requests, 25_000usize.div_ceil(200));
    }

    #[test]
    fn the_window_excludes_its_end_and_later_changes() {
        let records = [(1, 10), (2, 20), (3, 30)];
        let (seen, _, _) = run(&records, 10, 30);
        assert_eq!(seen, vec![1, 2]);
    }
}
