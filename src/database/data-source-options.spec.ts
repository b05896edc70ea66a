import { connectionSettings } from './data-source-options';

describe('connectionSettings', () => {
  it('leaves a URL without the app-set parameters as it is', () => {
    expect(connectionSettings('postgres://u:p%23w@db:5432/shop', '-c a=1')).toEqual({
      url: 'postgres://u:p%23w@db:5432/shop',
      options: '-c a=1',
    });
    expect(connectionSettings('postgres://db/shop?sslmode=require', '-c a=1')).toEqual({
      url: 'postgres://db/shop?sslmode=require',
      options: '-c a=1',
    });
  });

  it("takes options and application_name out of the URL; the URL's options follow the app's", () => {
    expect(
      connectionSettings(
        'postgres://u@db/shop?sslmode=require&options=-c%20search_path%3Dx&application_name=them',
        '-c a=1',
      ),
    ).toEqual({ url: 'postgres://u@db/shop?sslmode=require', options: '-c a=1 -c search_path=x' });
    expect(connectionSettings('postgres://db/shop?application_name=them')).toEqual({
      url: 'postgres://db/shop',
      options: '',
    });
    expect(connectionSettings('postgres:///shop?host=/run/pg&options=endpoint%3Dep-1')).toEqual({
      url: 'postgres:///shop?host=%2Frun%2Fpg',
      options: 'endpoint=ep-1',
    });
  });
});
